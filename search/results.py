"""A run directory -> ranked rows -> a table (terminal, Markdown, CSV, JSON).

Rows come from Ray's ``ExperimentAnalysis`` over the run directory, so finished, partial and interrupted runs rank alike.
A row shows the metric first, then the searched parameters (``bleu | num_beams | length_penalty | early_stopping``), then
the extra columns, and always ``trial_id``, ``status`` and ``training_iteration``. Trials that an early-stopping
scheduler cut (``STOPPED``), trials without the metric (pending) and errored trials come after the ranked ones, in that
order, and are never ranked as winners. Ray's internal keys never appear.

For BLEU and chrF, the header names the sacreBLEU signature once, and :func:`mark_ties` runs sacreBLEU's paired bootstrap
test of the top rows against the best on the translations that trainables leave in their trial directories
(``hypotheses.txt`` and ``references.txt``, one sentence a line, rewritten at every report).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from search.errors import UserError
from search.metrics import BOOTSTRAP_METRICS, DEFAULT_ALPHA, DEFAULT_RESAMPLES, paired_bootstrap
from search.spec import Spec

SCOPES = ("last", "best", "avg")
FORMATS = ("table", "md", "csv", "json")
HYPOTHESES_FILE = "hypotheses.txt"
REFERENCES_FILE = "references.txt"
EARLY_STOPPING = ("asha", "hyperband", "median")  # schedulers that cut trials short
BOOTSTRAP_TOP = 10  # rows tested against the best; each test resamples the whole dev set n times


@dataclass(frozen=True)
class Row:
    trial_id: str
    status: str
    training_iteration: int
    value: float | None  # the metric under the ranking's scope
    params: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    path: str | None = None  # the trial directory
    tag: str | None = None  # Ray's experiment tag as first given ("3_lr=0.001"), which PBT's logs name trials by
    p_value: float | None = None  # paired bootstrap vs the best row (None: not tested)
    tied: bool | None = None  # statistically tied with the best (None: not tested)


@dataclass(frozen=True)
class Ranking:
    metric: str
    mode: str
    scope: str
    params: tuple[str, ...]
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    signature: str | None = None  # sacreBLEU signature of the metric, when every row shares one
    bootstrap: str | None = None  # how ties were tested, when they were

    @property
    def ranked(self) -> tuple[Row, ...]:
        """Rows that may win: with a value, neither errored nor stopped early."""
        return tuple(r for r in self.rows if r.value is not None and r.status not in ("ERROR", "STOPPED"))

    @property
    def best(self) -> Row | None:
        ranked = self.ranked
        return ranked[0] if ranked else None


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def trial_params(config: dict, spec: Spec, constants: bool = False) -> dict[str, Any]:
    """The searched parameters of one trial's config, by dotted name; switched-off conditional ones are absent.

    With ``constants``, parameters fixed with ``value:`` are included too (everything the trial ran with).
    """
    from search.space import trial_config

    flat = flatten(trial_config(config, spec.parameters))
    return {p.name: flat[p.name] for p in spec.parameters if (constants or not p.is_constant) and p.name in flat}


def _scoped(history: Any, last: dict, metric: str, mode: str, scope: str) -> float | None:
    values = []
    if history is not None and metric in getattr(history, "columns", ()):
        values = [float(v) for v in history[metric].tolist() if isinstance(v, int | float) and not math.isnan(v)]
    if not values:
        v = last.get(metric)
        values = [float(v)] if isinstance(v, int | float) and not math.isnan(v) else []
    if not values:
        return None
    if scope == "last":
        return values[-1]
    if scope == "best":
        return max(values) if mode == "max" else min(values)
    return sum(values) / len(values)


def _error_line(trial: Any) -> str | None:
    path = Path(getattr(trial, "path", None) or "") / "error.txt"
    if path.is_file():
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        return lines[-1][:200] if lines else "error"
    return "error" if trial.status == "ERROR" else None


def _signature(analysis: Any, metric: str) -> tuple[str | None, tuple[str, ...]]:
    """The one signature of ``metric`` over all trials, or None and a note when they differ."""
    found = {
        str(t.last_result[f"{metric}_signature"])
        for t in analysis.trials
        if (t.last_result or {}).get(f"{metric}_signature")
    }
    if len(found) == 1:
        return found.pop(), ()
    if found:
        return None, (f"trials report different {metric} signatures, scores are not comparable: {sorted(found)}",)
    return None, ()


def _stopped(rows: list[Row], spec: Spec) -> list[Row]:
    """Mark trials that an early-stopping scheduler cut before the longest trial's last iteration as STOPPED."""
    if spec.scheduler.type not in EARLY_STOPPING or not rows:
        return rows
    longest = max(r.training_iteration for r in rows)
    return [
        replace(r, status="STOPPED") if r.status == "TERMINATED" and r.training_iteration < longest else r for r in rows
    ]


def _read_lines(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").split("\n")[:-1] if path.stat().st_size else []


def mark_ties(
    ranking: Ranking, *, n_samples: int = DEFAULT_RESAMPLES, top: int = BOOTSTRAP_TOP, alpha: float = DEFAULT_ALPHA
) -> Ranking:
    """Test the ``top`` ranked rows against the best with sacreBLEU's paired bootstrap; mark ties (p >= ``alpha``).

    Needs the metric to be ``bleu`` or ``chrf`` and ``hypotheses.txt``/``references.txt`` in the trial directories;
    otherwise the ranking comes back unchanged, with a note saying why. Rows whose translations equal the best's are
    tied without a test (sacreBLEU gives identical systems its smallest p-value).
    """
    if n_samples <= 0 or ranking.metric not in BOOTSTRAP_METRICS or ranking.best is None:
        return ranking
    best = ranking.best
    best_hyps = _read_lines(Path(best.path or "") / HYPOTHESES_FILE)
    refs = _read_lines(Path(best.path or "") / REFERENCES_FILE)
    if best_hyps is None or refs is None or len(best_hyps) != len(refs) or not refs:
        note = f"no paired bootstrap: the best trial left no {HYPOTHESES_FILE} and {REFERENCES_FILE} of equal length"
        return replace(ranking, notes=(*ranking.notes, note))
    systems, skipped = {}, []
    for row in ranking.ranked[1:top]:
        hyps = _read_lines(Path(row.path or "") / HYPOTHESES_FILE)
        if hyps is None or len(hyps) != len(refs) or _read_lines(Path(row.path or "") / REFERENCES_FILE) != refs:
            skipped.append(row.trial_id)
        else:
            systems[row.trial_id] = hyps
    identical = {k for k, hyps in systems.items() if hyps == best_hyps}
    result = paired_bootstrap(
        best_hyps, {k: v for k, v in systems.items() if k not in identical}, refs, metric=ranking.metric,
        n_samples=n_samples,
    )  # fmt: skip
    rows = []
    for row in ranking.rows:
        if row.trial_id == best.trial_id:
            row = replace(row, tied=True)
        elif row.trial_id in identical:
            row = replace(row, p_value=1.0, tied=True)
        elif row.trial_id in result.p_values:
            p = result.p_values[row.trial_id]
            row = replace(row, p_value=p, tied=p >= alpha)
        rows.append(row)
    tested = len(systems)
    how = (
        f"paired bootstrap vs the best (sacreBLEU, {n_samples} resamples, {len(refs)} sentences): "
        f"≈ tied with the best at p >= {alpha}, < worse at p < {alpha}; top {tested + 1} rows tested, on each trial's "
        f"last translations; {result.signature or 'identical outputs only'}"
    )
    notes = ranking.notes + ((f"not tested (no matching translations): {', '.join(skipped)}",) if skipped else ())
    return replace(ranking, rows=tuple(rows), bootstrap=how, notes=notes)


def rank(
    run_dir: str | Path,
    *,
    metric: str | None = None,
    mode: str | None = None,
    scope: str = "last",
    top: int | None = None,
    columns: tuple[str, ...] | None = None,
    bootstrap: int = DEFAULT_RESAMPLES,
    alpha: float = DEFAULT_ALPHA,
) -> Ranking:
    """Rank the trials of a run directory by ``metric`` (default: the spec's), best first.

    Args:
        run_dir: a run directory (holds ``search_spec.yaml``).
        metric, mode: default to the spec's.
        scope: ``last`` (the last report), ``best`` (the best report) or ``avg`` (the mean of all reports).
        top: keep only this many ranked rows (stopped, pending and errored ones are always listed).
        columns: more reported metrics to show (default: the spec's ``columns``).
        bootstrap: resamples of the paired bootstrap test of the top rows against the best (0: no test).
        alpha: p-value under which a row counts as worse than the best.

    Example:
        >>> ranking = rank("runs/beam_seed_grid", scope="last")  # doctest: +SKIP
        >>> print(format_ranking(ranking, "md"))  # doctest: +SKIP
    """
    from ray.tune import ExperimentAnalysis

    from search.runner import load_saved_spec

    run_dir = Path(run_dir).resolve()
    spec = load_saved_spec(run_dir)
    metric = metric or spec.metric.name
    mode = mode or spec.metric.mode
    if mode not in ("max", "min"):
        raise UserError(f"--mode: must be max or min, got {mode!r}")
    if scope not in SCOPES:
        raise UserError(f"--scope: must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not (run_dir / "experiment_state.json").exists() and not any(run_dir.glob("experiment_state-*.json")):
        raise UserError(f"{run_dir}: no trials recorded yet (no experiment_state*.json); has the sweep started?")
    analysis = ExperimentAnalysis(str(run_dir))
    frames = analysis.trial_dataframes
    columns = tuple(c for c in (columns if columns is not None else spec.columns) if not c.endswith("_signature"))
    signature, notes = _signature(analysis, metric)
    rows = []
    for t in analysis.trials:
        last = t.last_result or {}
        history = frames.get(t.path) if hasattr(t, "path") else None
        rows.append(
            Row(
                trial_id=t.trial_id,
                status=t.status,
                training_iteration=int(last.get("training_iteration", 0) or 0),
                value=_scoped(history, last, metric, mode, scope),
                params=trial_params(t.config, spec),
                columns={c: last.get(c) for c in columns},
                error=_error_line(t) if t.status == "ERROR" else None,
                path=str(t.path) if getattr(t, "path", None) else None,
                tag=str(t.experiment_tag).split("@perturbed")[0] if getattr(t, "experiment_tag", None) else None,
            )
        )
    ranking = Ranking(
        metric=metric,
        mode=mode,
        scope=scope,
        params=tuple(p.name for p in spec.parameters if not p.is_constant),
        columns=columns,
        rows=order_rows(_stopped(rows, spec), mode, top),
        notes=notes,
        signature=signature,
    )
    return mark_ties(ranking, n_samples=bootstrap, alpha=alpha)


def combine(parts: dict[str, Ranking], key: str) -> Ranking:
    """One ranking over several runs of the same metric: ``key`` names each row's run (e.g. the checkpoint decoded).

    The rows are ordered anew and the ties tested again across runs (translations of the same references compare).
    """
    first = next(iter(parts.values()))
    rows = [replace(row, params={key: label, **row.params}) for label, r in parts.items() for row in r.rows]
    signatures = {r.signature for r in parts.values()}
    params = (key, *dict.fromkeys(p for r in parts.values() for p in r.params))
    columns = tuple(dict.fromkeys(c for r in parts.values() for c in r.columns))
    notes = tuple(dict.fromkeys(n for r in parts.values() for n in r.notes if not n.startswith("not tested")))
    ranking = Ranking(
        metric=first.metric, mode=first.mode, scope=first.scope, params=params, columns=columns,
        rows=order_rows(rows, first.mode), notes=notes, signature=first.signature if len(signatures) == 1 else None,
    )  # fmt: skip
    return mark_ties(ranking)


def order_rows(rows: list[Row], mode: str, top: int | None = None) -> tuple[Row, ...]:
    """Ranked rows best first (at most ``top``), then stopped ones (best first), pending ones and errored ones."""
    sign = -1.0 if mode == "max" else 1.0
    with_value = sorted((r for r in rows if r.value is not None and r.status != "ERROR"), key=lambda r: sign * r.value)
    ranked = [r for r in with_value if r.status != "STOPPED"]
    stopped = [r for r in with_value if r.status == "STOPPED"]
    unranked = [r for r in rows if r.value is None and r.status != "ERROR"]
    errored = [r for r in rows if r.status == "ERROR"]
    return tuple((ranked[:top] if top is not None else ranked) + stopped + unranked + errored)


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
