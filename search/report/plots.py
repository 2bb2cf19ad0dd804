"""PNG plots of a run directory (matplotlib, no display needed).

- ``heatmap.png``: the metric over ``num_beams`` x ``length_penalty``, one panel per ``early_stopping`` value
  (decoding sweeps; a cell shows the best trial with those values when other parameters vary too).
- ``curves.png``: the metric against ``step`` (else ``training_iteration``) for every trial that reported more than once
  (ASHA, PBT); a trial an early-stopping scheduler cut ends with an ``x``, an errored one with a red ``x``.
- ``pbt_schedule.png``: each searched numeric hyperparameter against the iteration for every PBT trial, the winner bold.
- ``cost.png``: the metric against a config's cost (``beam_steps`` by default; only when the trials report it), with
  the Pareto front of (metric, cost) and the tie set of the paired bootstrap (the trials tied with the best).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from search.errors import UserError
from search.files import atomic_write
from search.report.ranking import DEFAULT_COST, Ranking, Row, rank, trial_params
from search.rundir import read_history, read_run
from search.spec import Spec


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    """Write the figure as a PNG, whole or not at all, and free it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write(out, buffer.getvalue())
    return out


def _history(row: Row) -> list[dict]:
    return read_history(Path(row.path or ""))


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def heatmap(ranking: Ranking, out: Path) -> Path | None:
    """The metric over num_beams x length_penalty, one panel per early_stopping value; None if not a beam sweep."""
    rows = [r for r in ranking.ranked if "num_beams" in r.params and "length_penalty" in r.params]
    if not rows:
        return None
    plt = _pyplot()
    better = max if ranking.mode == "max" else min
    beams = sorted({r.params["num_beams"] for r in rows})
    penalties = sorted({r.params["length_penalty"] for r in rows})
    panels = sorted({str(r.params.get("early_stopping", "-")) for r in rows})
    cells: dict[tuple, float] = {}
    for r in rows:
        key = (str(r.params.get("early_stopping", "-")), r.params["num_beams"], r.params["length_penalty"])
        cells[key] = better(cells.get(key, r.value), r.value)
    values = list(cells.values())
    low, high = min(values), max(values)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.0 + 0.9 * len(penalties) * len(panels) + 1.2, 0.6 * len(beams) + 1.8), squeeze=False
    )
    image, top = None, better(values)
    for ax, panel in zip(axes[0], panels, strict=True):
        grid = [[cells.get((panel, b, lp), math.nan) for lp in penalties] for b in beams]
        image = ax.imshow(grid, cmap="viridis", vmin=low, vmax=high, aspect="auto", origin="lower")
        ax.set_xticks(range(len(penalties)), [_label(p) for p in penalties])
        ax.set_yticks(range(len(beams)), [_label(b) for b in beams])
        ax.set_xlabel("length_penalty")
        ax.set_ylabel("num_beams")
        ax.set_title(f"early_stopping={panel}" if panel != "-" else "")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v == top:  # the winner's cell(s)
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
                if not math.isnan(v):
                    bright = high > low and (v - low) / (high - low) > 0.6
                    ax.text(
                        j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="black" if bright else "white"
                    )
    fig.colorbar(image, ax=axes[0].tolist(), label=ranking.metric, shrink=0.9)
    others = [p for p in ranking.params if p not in ("num_beams", "length_penalty", "early_stopping")]
    note = f" (best over {', '.join(others)})" if others else ""
    fig.suptitle(f"{ranking.metric} ({ranking.mode}, scope={ranking.scope}){note}; best boxed in red", fontsize=10)
    return _save(fig, out)


CURVE_EXTRAS = ("eval_loss",)  # also drawn, in a panel below the metric, when the trials report them


def curves(ranking: Ranking, out: Path, extras: tuple[str, ...] = CURVE_EXTRAS) -> Path | None:
    """The metric (and ``extras``) against step for every trial with more than one report; None when no trial has."""
    histories = {r.trial_id: _history(r) for r in ranking.rows}
    if max((len(h) for h in histories.values()), default=0) < 2:
        return None
    reported = {k for h in histories.values() for res in h for k in res}
    metrics = [ranking.metric, *(m for m in extras if m in reported and m != ranking.metric)]
    plt = _pyplot()
    fig, axes = plt.subplots(len(metrics), 1, figsize=(8, 1.0 + 4.0 * len(metrics)), squeeze=False, sharex=True)
    best = ranking.best.trial_id if ranking.best else None
    x_key = "step" if "step" in reported else "training_iteration"
    colors = plt.get_cmap("tab10")
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for i, row in enumerate(ranking.rows):
            points = [(res[x_key], res[metric]) for res in histories[row.trial_id] if metric in res and x_key in res]
            points = [(x, y) for x, y in points if isinstance(y, int | float) and not math.isnan(y)]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            cut = row.status in ("STOPPED", "ERROR")
            label = (
                row.trial_id + (" (best)" if row.trial_id == best else "") + (f" {row.status.lower()}" if cut else "")
            )
            ax.plot(
                xs, ys, color=colors(i % 10), alpha=0.45 if cut else 0.95, linewidth=2.6 if row.trial_id == best else 1.2,
                marker="." if len(xs) < 30 else None, label=label,
            )  # fmt: skip
            if cut:
                ax.plot(xs[-1], ys[-1], "x", color="red" if row.status == "ERROR" else colors(i % 10), ms=10, mew=2)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(x_key)
    axes[-1, 0].xaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_title(f"{ranking.metric} per report (x: cut by the scheduler, red x: errored)", fontsize=10)
    if len(ranking.rows) <= 16:
        axes[0, 0].legend(fontsize=7, loc="best")
    return _save(fig, out)


def pbt_schedules(ranking: Ranking, spec: Spec, out: Path) -> Path | None:
    """Each searched numeric hyperparameter against the iteration for every trial (from the configs it reported)."""
    numeric = [p for p in ranking.params if p in {q.name for q in spec.parameters}]
    series: dict[str, dict[str, list[tuple[int, float]]]] = {p: {} for p in numeric}
    for row in ranking.rows:
        for res in _history(row):
            values = trial_params(res.get("config") or {}, spec)
            for p in numeric:
                v = values.get(p)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    series[p].setdefault(row.trial_id, []).append((res["training_iteration"], float(v)))
    series = {p: s for p, s in series.items() if s}
    if not series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.6 * len(series)), squeeze=False, sharex=True)
    best = ranking.best.trial_id if ranking.best else None
    colors = plt.get_cmap("tab10")
    order = {r.trial_id: i for i, r in enumerate(ranking.rows)}
    for ax, (param, by_trial) in zip(axes[:, 0], series.items(), strict=True):
        for trial_id, points in by_trial.items():
            xs, ys = zip(*points, strict=True)
            is_best = trial_id == best
            ax.step(
                xs, ys, where="post", color=colors(order[trial_id] % 10), linewidth=2.6 if is_best else 1.0,
                alpha=1.0 if is_best else 0.6, label=f"{trial_id}{' (best)' if is_best else ''}",
            )  # fmt: skip
        values = [y for pts in by_trial.values() for _, y in pts]
        if min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        ax.set_ylabel(param)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("training_iteration")
    axes[-1, 0].xaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_title("PBT hyperparameter schedules (winner bold)", fontsize=10)
    if len(ranking.rows) <= 16:
        axes[0, 0].legend(fontsize=7, loc="best")
    return _save(fig, out)


def _short(row: Row) -> str:
    """A front point's label: its searched values, ``4, 1.1, False``."""
    return ", ".join(_label(v) for v in row.params.values())


def cost_plot(ranking: Ranking, out: Path) -> Path | None:
    """The metric against ``ranking.cost`` for the ranked trials (``rank(pareto=COST)``): the Pareto front as a
    line through its points (labelled with their searched values), the trials tied with the best (paired bootstrap)
    in orange, those worse in grey, untested ones hollow, the best as a star; None without a cost or costed trials."""
    cost = ranking.cost
    rows = [r for r in ranking.ranked if cost and isinstance(r.columns.get(cost), int | float)]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    groups = (
        ("tied with the best", True, {"color": "tab:orange"}),
        ("worse than the best", False, {"color": "grey", "alpha": 0.7}),
        ("not tested", None, {"facecolors": "none", "edgecolors": "grey"}),
    )
    for label, tied, style in groups:
        points = [(r.columns[cost], r.value) for r in rows if r.tied is tied]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, s=36, label=label, zorder=3, **style)
    front = sorted((r for r in rows if r.front), key=lambda r: r.columns[cost])
    if front:
        ax.step([r.columns[cost] for r in front], [r.value for r in front], where="post", color="tab:blue",
                linewidth=1.5, label="Pareto front", zorder=2)  # fmt: skip
        for r in front:
            ax.annotate(_short(r), (r.columns[cost], r.value), textcoords="offset points", xytext=(4, -10), fontsize=7)
    best = ranking.best
    if best is not None and best in rows:
        ax.scatter([best.columns[cost]], [best.value], marker="*", s=220, color="red", label="best", zorder=4)
    ax.set_xlabel(f"{cost} (lower is cheaper)")
    ax.set_ylabel(ranking.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    tie = "" if ranking.bootstrap else "; no paired bootstrap"
    ax.set_title(f"{ranking.metric} ({ranking.mode}, scope={ranking.scope}) against {cost}{tie}", fontsize=10)
    return _save(fig, out)


def _reports(run, column: str) -> bool:
    """Whether any trial of the run reported ``column`` as a number."""
    return any(isinstance(t.last_result.get(column), int | float) for t in run.trials())


def plot(
    run_dir: str | Path, out_dir: str | Path | None = None, *, scope: str = "last", cost: str = DEFAULT_COST
) -> list[Path]:
    """Write every plot that fits the run into ``out_dir`` (default: ``RUN_DIR/plots``); returns their paths.

    ``cost.png`` is drawn when the trials report ``cost`` (decode trials report ``beam_steps``); it runs the paired
    bootstrap for its tie set.

    Example:
        >>> plot("runs/decode_seed_grid")  # doctest: +SKIP
        [PosixPath('runs/decode_seed_grid/plots/heatmap.png')]
    """
    run = read_run(run_dir)
    spec = run.spec
    ranking = rank(run, scope=scope, bootstrap=0)
    out = Path(out_dir) if out_dir else run.dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = [heatmap(ranking, out / "heatmap.png"), curves(ranking, out / "curves.png")]
    if spec.scheduler.type == "pbt":
        written.append(pbt_schedules(ranking, spec, out / "pbt_schedule.png"))
    if _reports(run, cost):
        written.append(cost_plot(rank(run, scope=scope, pareto=cost), out / "cost.png"))
    paths = [p for p in written if p is not None]
    if not paths:
        raise UserError(
            f"{run.location}: nothing to plot: no num_beams x length_penalty grid and no trial reported more than once"
        )
    if out_dir is None:
        run.publish(paths)  # a remote run keeps its plots beside it
    return paths


__all__ = ["cost_plot", "curves", "heatmap", "pbt_schedules", "plot"]
