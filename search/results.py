"""A run directory -> ranked rows -> a table (terminal, Markdown, CSV, JSON).

Rows come from Ray's ``ExperimentAnalysis`` over the run directory, so finished, partial and interrupted runs rank alike.
A row shows the metric first, then the searched parameters (``bleu | num_beams | length_penalty | early_stopping``), then
the extra columns, and always ``trial_id``, ``status`` and ``training_iteration``. Trials without the metric (pending,
errored) come after the ranked ones and are never ranked as winners. Ray's internal keys never appear.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search.errors import UserError
from search.params import effective_config
from search.spec import Spec, deep_merge

SCOPES = ("last", "best", "avg")
FORMATS = ("table", "md", "csv", "json")


@dataclass(frozen=True)
class Row:
    trial_id: str
    status: str
    training_iteration: int
    value: float | None  # the metric under the ranking's scope
    params: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Ranking:
    metric: str
    mode: str
    scope: str
    params: tuple[str, ...]
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> Row | None:
        ranked = [r for r in self.rows if r.value is not None and r.status != "ERROR"]
        return ranked[0] if ranked else None


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def trial_params(config: dict, spec: Spec) -> dict[str, Any]:
    """The searched parameters of one trial's config, by dotted name; switched-off conditional ones are absent."""
    from search.space import GRID_KEY

    cfg = dict(config)
    combo = cfg.pop(GRID_KEY, None)
    if combo:
        cfg = deep_merge(cfg, combo)
    flat = _flat(effective_config(cfg, spec.parameters))
    return {p.name: flat[p.name] for p in spec.parameters if not p.is_constant and p.name in flat}


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
    path = Path(trial.local_path or "") / "error.txt"
    if path.is_file():
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        return lines[-1][:200] if lines else "error"
    return "error" if trial.status == "ERROR" else None


def rank(
    run_dir: str | Path,
    *,
    metric: str | None = None,
    mode: str | None = None,
    scope: str = "last",
    top: int | None = None,
    columns: tuple[str, ...] | None = None,
) -> Ranking:
    """Rank the trials of a run directory by ``metric`` (default: the spec's), best first.

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
    columns = tuple(columns if columns is not None else spec.columns)
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
            )
        )
    sign = -1.0 if mode == "max" else 1.0
    ranked = sorted((r for r in rows if r.value is not None and r.status != "ERROR"), key=lambda r: sign * r.value)
    unranked = [r for r in rows if r.value is None and r.status != "ERROR"]
    errored = [r for r in rows if r.status == "ERROR"]
    if top is not None:
        ranked = ranked[:top]
    return Ranking(
        metric=metric,
        mode=mode,
        scope=scope,
        params=tuple(p.name for p in spec.parameters if not p.is_constant),
        columns=columns,
        rows=tuple(ranked + unranked + errored),
    )


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def _header(r: Ranking) -> list[str]:
    return [r.metric, *r.params, *r.columns, "trial_id", "status", "training_iteration"]


def _cells(r: Ranking, row: Row) -> list[Any]:
    value = row.value if row.status != "ERROR" else None
    tail = [row.trial_id, row.status + (f": {row.error}" if row.error else ""), row.training_iteration]
    return [value, *(row.params.get(p) for p in r.params), *(row.columns.get(c) for c in r.columns), *tail]


def format_ranking(r: Ranking, fmt: str = "table") -> str:
    """Render a ranking in one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise UserError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    title = f"{r.metric} ({r.mode}, scope={r.scope})"
    header = _header(r)
    if fmt == "json":
        return json.dumps(
            {
                "metric": r.metric,
                "mode": r.mode,
                "scope": r.scope,
                "notes": list(r.notes),
                "rows": [asdict(row) for row in r.rows],
            },
            indent=2,
            default=str,
        )
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        for row in r.rows:
            writer.writerow(["" if c is None else c for c in _cells(r, row)])
        return buf.getvalue()
    if fmt == "md":
        lines = [f"Ranked by {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(c) for c in _cells(r, row)) + " |" for row in r.rows]
        return "\n".join(lines + [*([""] + list(r.notes) if r.notes else [])])
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Ranked by {title}", caption="\n".join(r.notes) or None)
    for h in header:
        table.add_column(h, justify="right" if h in (r.metric, "training_iteration") else "left")
    for row in r.rows:
        table.add_row(*(_cell(c) for c in _cells(r, row)))
    buf = io.StringIO()
    Console(file=buf, width=max(100, 14 * len(header)), force_terminal=False).print(table)
    return buf.getvalue()
