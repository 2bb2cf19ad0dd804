"""A ranking as a table: ``table`` (the terminal's, with rich), ``md`` (a model card's), ``csv`` or ``json``.

The header names the metric, its mode and scope and, once, the sacreBLEU signature; ``≈``/``<`` mark the rows the
paired bootstrap found tied with or worse than the best.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from search.errors import UserError
from search.report.ranking import Ranking, Row

FORMATS = ("table", "md", "csv", "json")


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


def _header(r: Ranking, machine: bool = False) -> list[str]:
    test = (["p_value", "tied"] if machine else ["vs best"]) if r.bootstrap else []
    return [r.metric, *test, *r.params, *r.columns, "trial_id", "status", "training_iteration"]


def _cells(r: Ranking, row: Row, machine: bool = False) -> list[Any]:
    value = row.value if row.status != "ERROR" else None
    test = ([row.p_value, row.tied] if machine else [_mark(row)]) if r.bootstrap else []
    tail = [row.trial_id, row.status + (f": {row.error}" if row.error else ""), row.training_iteration]
    return [value, *test, *(row.params.get(p) for p in r.params), *(row.columns.get(c) for c in r.columns), *tail]


def title(r: Ranking) -> str:
    """``Ranked by bleu (max, scope=last)``, with the sacreBLEU signature when there is one."""
    text = f"Ranked by {r.metric} ({r.mode}, scope={r.scope})"
    return text + (f"; {r.metric} signature: {r.signature}" if r.signature else "")


def format_ranking(r: Ranking, fmt: str = "table") -> str:
    """Render a ranking in one of :data:`FORMATS`: ``table`` (rich), ``md`` (a model card's), ``csv`` or ``json``."""
    if fmt not in FORMATS:
        raise UserError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    notes = [n for n in (r.bootstrap, *r.notes) if n]
    if fmt == "json":
        head = {"metric": r.metric, "mode": r.mode, "scope": r.scope, "signature": r.signature}
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
    header = _header(r)
    if fmt == "md":
        lines = [title(r), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(c).replace("|", "\\|") for c in _cells(r, row)) + " |" for row in r.rows]
        return "\n".join(lines + ([""] + notes if notes else []))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title(r), caption="\n".join(notes) or None)
    for h in header:
        table.add_column(h, justify="right" if h in (r.metric, "training_iteration") else "left")
    for row in r.rows:
        table.add_row(*(_cell(c) for c in _cells(r, row)))
    buf = io.StringIO()
    Console(file=buf, width=max(100, 14 * len(header)), force_terminal=False).print(table)
    return buf.getvalue()
