"""A ranking as a table: ``table`` (the terminal's, with rich), ``md`` (a model card's), ``csv`` or ``json``.

The header names the metric, its mode and scope and, once, the sacreBLEU signature; ``≈``/``<`` mark the rows the
paired bootstrap found tied with or worse than the best; with a Pareto front (``rank --pareto``), ``◆`` marks the
rows on the front of (metric, cost) and the cost column stands beside it. ``md``, ``csv`` and ``json`` hold every
column; the terminal table fits the terminal's width: the metric, the searched parameters in the spec's order, the tie
and front marks (and the cost) always, then
the trial id, the status (when not every trial finished), the extra metrics and ``training_iteration`` (when it differs
between trials) as room allows; the columns left out are named under the table (``every_column`` shows them all).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from search.errors import UserError
from search.report.ranking import FINISHED, Ranking, Row

FORMATS = ("table", "md", "csv", "json")
TERMINAL_WIDTH = 120  # when the output is no terminal and COLUMNS is unset: a common terminal width
ERRORS_LISTED = 5  # errored trials whose error line is printed under the terminal table
FRONT_MARK = "◆"  # a row on the Pareto front of (metric, cost)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def _mark(row: Row) -> str:
    if row.tied is None:
        return ""
    if row.p_value is None:
        return "best"
    return f"{'≈' if row.tied else '<'} p={row.p_value:.3g}"


def _front(row: Row) -> str:
    return FRONT_MARK if row.front else ""


def front_note(r: Ranking) -> str | None:
    """What the front mark means, when the ranking has a front."""
    if r.cost is None:
        return None
    return (
        f"{FRONT_MARK} front: on the Pareto front of {r.metric} ({r.mode}) against {r.cost} (min): no finished trial "
        f"is as good on both and better on one"
    )


def _header(r: Ranking, machine: bool = False) -> list[str]:
    test = (["p_value", "tied"] if machine else ["vs best"]) if r.bootstrap else []
    front = ["front"] if r.cost else []
    return [r.metric, *test, *front, *r.params, *r.columns, "trial_id", "status", "training_iteration"]


def _cells(r: Ranking, row: Row, machine: bool = False) -> list[Any]:
    value = row.value if row.status != "ERROR" else None
    test = ([row.p_value, row.tied] if machine else [_mark(row)]) if r.bootstrap else []
    front = ([row.front] if machine else [_front(row)]) if r.cost else []
    tail = [row.trial_id, row.status + (f": {row.error}" if row.error else ""), row.training_iteration]
    params = (row.params.get(p) for p in r.params)
    return [value, *test, *front, *params, *(row.columns.get(c) for c in r.columns), *tail]


@dataclass(frozen=True)
class Column:
    """A column of the terminal table: its header and its cells as printed."""

    header: str
    cells: tuple[str, ...]
    right: bool = False  # numbers read best right-aligned

    @property
    def width(self) -> int:
        from rich.cells import cell_len

        return max(cell_len(text) for text in (self.header, *self.cells))


def _trial_ids(r: Ranking, every_column: bool) -> tuple[Column, str | None]:
    """The trial ids, short when every row shares Ray's per-run prefix (``a1b2c3d4_00003`` -> ``00003``)."""
    ids = [row.trial_id for row in r.rows]
    prefixes = {i.rpartition("_")[0] for i in ids}
    if every_column or len(prefixes) != 1 or not all("_" in i for i in ids):
        return Column("trial_id", tuple(ids)), None
    prefix = prefixes.pop() + "_"
    return Column("trial", tuple(i[len(prefix) :] for i in ids)), f"trial: the trial_id after {prefix}"


def table_columns(r: Ranking, every_column: bool = False) -> tuple[list[Column], list[Column], list[str]]:
    """The terminal table's columns: those always shown (the metric, the searched parameters in the spec's order,
    the tie mark, the front mark and the cost), the optional ones by use (trial id, status when not every trial finished, the extra metrics,
    training_iteration when it differs between trials), and notes on the short forms used."""
    value = Column(r.metric, tuple(_cell(row.value if row.status != "ERROR" else None) for row in r.rows), True)
    params = [Column(p, tuple(_cell(row.params.get(p)) for row in r.rows)) for p in r.params]
    marks = [Column("vs best", tuple(_mark(row) for row in r.rows))] if r.bootstrap else []
    if r.cost:
        marks += [Column("front", tuple(_front(row) for row in r.rows))]
        marks += [Column(r.cost, tuple(_cell(row.columns.get(r.cost)) for row in r.rows), True)]
    trial, note = _trial_ids(r, every_column)
    status = Column("status", tuple(row.status for row in r.rows))
    extra = [Column(c, tuple(_cell(row.columns.get(c)) for row in r.rows), True) for c in r.columns if c != r.cost]
    iteration = Column("training_iteration", tuple(str(row.training_iteration) for row in r.rows), True)
    optional = [trial]
    if every_column or any(row.status != FINISHED for row in r.rows):
        optional.append(status)
    optional += extra
    if every_column or len(set(iteration.cells)) > 1:
        optional.append(iteration)
    return [value, *params, *marks], optional, [note] if note else []


def table_width(columns: list[Column]) -> int:
    """Characters of a rich table of these columns (a border and a space of padding each side of every cell)."""
    return sum(c.width + 3 for c in columns) + 1


def fit_columns(required: list[Column], optional: list[Column], width: int) -> tuple[list[Column], list[Column]]:
    """The columns shown within ``width`` (the required ones always; each optional one, by priority, if it still
    fits), in their given order, and the ones left out."""
    shown, left_out = list(required), []
    for column in optional:
        if table_width([*shown, column]) <= width:
            shown.append(column)
        else:
            left_out.append(column)
    return shown, left_out


def _errors(r: Ranking) -> list[str]:
    errored = [row for row in r.rows if row.status == "ERROR"]
    lines = [f"{row.trial_id}: {row.error}" for row in errored[:ERRORS_LISTED]]
    more = len(errored) - ERRORS_LISTED
    return ["errors:", *lines, *([f"... and {more} more (--format csv)"] if more > 0 else [])] if errored else []


def _terminal(r: Ranking, notes: list[str], width: int, every_column: bool) -> str:
    """The ranking as a rich table within ``width`` columns (unless its required columns alone are wider, or
    ``every_column``), with the title above and the notes below, wrapped at ``width``."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    required, optional, short = table_columns(r, every_column)
    if every_column:
        shown, left_out = required + optional, []
    else:
        shown, left_out = fit_columns(required, optional, width)
    table = Table()
    for column in shown:
        table.add_column(column.header, justify="right" if column.right else "left", no_wrap=True)
    for i in range(len(r.rows)):
        table.add_row(*(column.cells[i] for column in shown))
    hidden = [f"not shown for width: {', '.join(c.header for c in left_out)} (--columns all, --format csv)"]
    below = short + (hidden if left_out else []) + notes + _errors(r)
    buf = io.StringIO()
    console = Console(file=buf, width=max(width, table_width(shown)), force_terminal=False)
    console.print(Text(title(r)), width=width)
    console.print(table)
    for line in below:
        console.print(Text(line), width=width)
    return buf.getvalue()


def title(r: Ranking) -> str:
    """``Ranked by bleu (max, scope=last)``, with the sacreBLEU signature when there is one."""
    text = f"Ranked by {r.metric} ({r.mode}, scope={r.scope})"
    return text + (f"; {r.metric} signature: {r.signature}" if r.signature else "")


def format_ranking(r: Ranking, fmt: str = "table", *, width: int | None = None, every_column: bool = False) -> str:
    """Render a ranking in one of :data:`FORMATS`: ``table`` (rich), ``md`` (a model card's), ``csv`` or ``json``.

    ``md``, ``csv`` and ``json`` hold every column. ``table`` fits ``width`` (default: the terminal's): the metric,
    the searched parameters in the spec's order and the tie mark always, then as many of the other columns as fit
    (:func:`fit_columns`); ``every_column`` shows them all, however wide.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    notes = [n for n in (r.bootstrap, front_note(r), *r.notes) if n]
    if fmt == "json":
        head = {"metric": r.metric, "mode": r.mode, "scope": r.scope, "signature": r.signature, "cost": r.cost}
        rows = [asdict(row) for row in r.rows]
        return json.dumps(
            {**head, "bootstrap": r.bootstrap, "notes": list(r.notes), "rows": rows}, indent=2, default=str
        )
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(_header(r, machine=True))
        for row in r.rows:
            writer.writerow(["" if c is None else c for c in _cells(r, row, machine=True)])
        return buf.getvalue()
    if fmt == "md":
        header = _header(r)
        lines = [title(r), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(c).replace("|", "\\|") for c in _cells(r, row)) + " |" for row in r.rows]
        return "\n".join(lines + ([""] + notes if notes else []))
    return _terminal(r, notes, width or shutil.get_terminal_size((TERMINAL_WIDTH, 24)).columns, every_column)
