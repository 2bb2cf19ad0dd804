"""A run directory -> ranked rows, with a paired bootstrap test marking the rows tied with the best.

Rows come from the run directory as ``search.rundir`` reads it (no Ray), so finished, partial and interrupted runs
rank alike.
A row shows the metric first, then the searched parameters (``bleu | num_beams | length_penalty | early_stopping``), then
the extra columns, and always ``trial_id``, ``status`` and ``training_iteration``. Trials that an early-stopping
scheduler cut (``STOPPED``), trials without the metric (pending) and errored trials come after the ranked ones, in that
order, and are never ranked as winners. Ray's internal keys never appear.

For the metrics of ``search.metrics.METRICS`` (BLEU, chrF, chrF++, TER, ROUGE), the header names the metric's signature
once, and :func:`mark_ties` runs the metric's paired bootstrap test (sacreBLEU's, or the same test on per-sentence ROUGE)
of the top rows against the best on the outputs that trainables leave in their trial directories (``hypotheses.txt``
and ``references.txt``, one sentence a line, rewritten at every report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from search.errors import UserError
from search.metrics import DEFAULT_ALPHA, DEFAULT_RESAMPLES, METRICS, paired_bootstrap
from search.rundir import Run, Trial, read_lines, read_run
from search.spec import Spec, trial_config
from search.trainables.outputs import HYPOTHESES_FILE, REFERENCES_FILE

SCOPES = ("last", "best", "avg")
FINISHED = "TERMINATED"  # Ray's status of a trial that ran to its end; only these rank and win
BOOTSTRAP_TOP = 10  # rows tested against the best; each test resamples the whole dev set n times
DEFAULT_COST = "beam_steps"  # decoder forward steps x beams kept: the work of a decoding config, machine-independent


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
    front: bool | None = None  # on the Pareto front of (metric, cost) (None: no front asked, or not a ranked row)


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
    cost: str | None = None  # the cost column of the Pareto front, when one was marked (``rank(pareto=...)``)

    @property
    def ranked(self) -> tuple[Row, ...]:
        """Rows that may win: finished (not errored, stopped early, running or pending) and with a value."""
        return tuple(r for r in self.rows if r.value is not None and r.status == FINISHED)

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
    flat = flatten(trial_config(config, spec.parameters))
    return {p.name: flat[p.name] for p in spec.parameters if (constants or not p.is_constant) and p.name in flat}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _scoped(history: list[dict], last: dict, metric: str, mode: str, scope: str) -> float | None:
    """The metric under ``scope``; None when never reported, or when the last report (``last``) or every report
    (``best``, ``avg``) is NaN or infinite: a diverged trial never wins."""
    reported = [float(r[metric]) for r in history if _number(r.get(metric))]
    if not reported and _number(last.get(metric)):
        reported = [float(last[metric])]
    finite = [v for v in reported if math.isfinite(v)]
    if scope == "last":
        return reported[-1] if reported and math.isfinite(reported[-1]) else None
    if not finite:
        return None
    if scope == "best":
        return max(finite) if mode == "max" else min(finite)
    return sum(finite) / len(finite)


def _default_mode(metric: str, spec: Spec) -> str:
    """The spec's mode for its own metric; the goal of another metric that ``METRICS`` knows (``ter``: min)."""
    if metric != spec.metric.name and metric in METRICS:
        return METRICS[metric].mode
    return spec.metric.mode


def _signature(trials: list[Trial], metric: str) -> tuple[str | None, tuple[str, ...]]:
    """The one signature of ``metric`` over all trials, or None and a note when they differ."""
    found = {str(t.last_result[f"{metric}_signature"]) for t in trials if t.last_result.get(f"{metric}_signature")}
    if len(found) == 1:
        return found.pop(), ()
    if found:
        return None, (f"trials report different {metric} signatures, scores are not comparable: {sorted(found)}",)
    return None, ()


def _stopped(rows: list[Row], cuts_trials: bool) -> list[Row]:
    """Mark trials that an early-stopping scheduler cut before the longest trial's last iteration as STOPPED."""
    if not cuts_trials or not rows:
        return rows
    longest = max(r.training_iteration for r in rows)
    return [
        replace(r, status="STOPPED") if r.status == "TERMINATED" and r.training_iteration < longest else r for r in rows
    ]


def mark_ties(
    ranking: Ranking, *, n_samples: int = DEFAULT_RESAMPLES, top: int = BOOTSTRAP_TOP, alpha: float = DEFAULT_ALPHA
) -> Ranking:
    """Test the ``top`` ranked rows against the best with the metric's paired bootstrap; mark ties (p >= ``alpha``).

    Needs the metric to be one of ``search.metrics.METRICS`` and ``hypotheses.txt``/``references.txt`` in the trial
    directories; otherwise the ranking comes back unchanged, with a note saying why. Rows whose outputs equal the
    best's are tied without a test (sacreBLEU's test gives identical systems its smallest p-value).
    """
    if n_samples <= 0 or ranking.metric not in METRICS or ranking.best is None:
        return ranking
    best = ranking.best
    best_hyps = read_lines(Path(best.path or "") / HYPOTHESES_FILE)
    refs = read_lines(Path(best.path or "") / REFERENCES_FILE)
    if best_hyps is None or refs is None or len(best_hyps) != len(refs) or not refs:
        note = f"no paired bootstrap: the best trial left no {HYPOTHESES_FILE} and {REFERENCES_FILE} of equal length"
        return replace(ranking, notes=(*ranking.notes, note))
    systems, skipped = {}, []
    for row in ranking.ranked[1:top]:
        hyps = read_lines(Path(row.path or "") / HYPOTHESES_FILE)
        if hyps is None or len(hyps) != len(refs) or read_lines(Path(row.path or "") / REFERENCES_FILE) != refs:
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
        f"paired bootstrap vs the best ({METRICS[ranking.metric].tester}, {n_samples} resamples, "
        f"{len(refs)} sentences): ≈ tied with the best at p >= {alpha}, < worse at p < {alpha}; top {tested + 1} rows tested, on each trial's "
        f"last translations; {result.signature or 'identical outputs only'}"
    )
    notes = ranking.notes + ((f"not tested (no matching translations): {', '.join(skipped)}",) if skipped else ())
    return replace(ranking, rows=tuple(rows), bootstrap=how, notes=notes)


def _cost(row: Row, cost: str) -> float | None:
    """The row's ``cost`` column as a finite number, else None."""
    v = row.columns.get(cost)
    return float(v) if _number(v) and math.isfinite(v) else None


def pareto_front(rows: tuple[Row, ...] | list[Row], metric_mode: str, cost: str) -> tuple[Row, ...]:
    """The rows no other row dominates on (metric, ``cost``), cheapest first: a row is dominated when another is at
    least as good on the metric (``metric_mode``: max or min) and at least as cheap, and strictly better on one.

    Rows with equal metric and equal cost are all on the front (neither dominates). Rows without a value or without a
    numeric ``cost`` column take no part. Pure: the caller picks the rows (``Ranking.ranked``: finished ones).

    Example:
        >>> rows = [Row(str(i), FINISHED, 1, v, {}, {"beam_steps": c}) for i, (v, c) in enumerate([(39.2, 150),
        ...         (39.1, 50), (38.0, 60), (37.0, 10)])]
        >>> [r.trial_id for r in pareto_front(rows, "max", "beam_steps")]
        ['3', '1', '0']
    """
    sign = 1.0 if metric_mode == "max" else -1.0
    points = [(r, sign * r.value, c) for r in rows if r.value is not None and (c := _cost(r, cost)) is not None]
    # Cheapest first, better first within a cost: a row is on the front iff it beats every cheaper-or-equal row seen.
    points.sort(key=lambda p: (p[2], -p[1]))
    front, best, best_cost = [], -math.inf, None
    for row, goodness, c in points:
        if goodness > best or (goodness == best and c == best_cost):
            front.append(row)
            best, best_cost = goodness, c
    return tuple(front)


def mark_front(ranking: Ranking, cost: str = DEFAULT_COST) -> Ranking:
    """Mark the ranked rows on the Pareto front of (metric, ``cost``) (``Row.front``); the cost column is shown.

    Raises:
        UserError: no ranked row reports ``cost`` as a number.
    """
    ranked = ranking.ranked
    if ranked and all(_cost(r, cost) is None for r in ranked):
        reported = sorted({c for r in ranked for c, v in r.columns.items() if _number(v)})
        raise UserError(
            f"--cost: no finished trial reports {cost!r} (decode trials report decoder_steps, beam_steps and "
            f"est_seconds); pick another with --cost, got columns {', '.join(reported) or 'none'}"
        )
    on = {id(r) for r in pareto_front(ranked, ranking.mode, cost)}
    finished = {id(r) for r in ranked}
    rows = tuple(replace(r, front=id(r) in on) if id(r) in finished else r for r in ranking.rows)
    columns = ranking.columns if cost in ranking.columns else (*ranking.columns, cost)
    return replace(ranking, rows=rows, cost=cost, columns=columns)


def rank(
    run_dir: str | Path | Run,
    *,
    metric: str | None = None,
    mode: str | None = None,
    scope: str = "last",
    top: int | None = None,
    columns: tuple[str, ...] | None = None,
    bootstrap: int = DEFAULT_RESAMPLES,
    alpha: float = DEFAULT_ALPHA,
    pareto: str | None = None,
) -> Ranking:
    """Rank the trials of a run directory by ``metric`` (default: the spec's), best first.

    Args:
        run_dir: a run directory (holds ``search_spec.yaml``), a storage URI of one, or a run already read.
        metric, mode: default to the spec's (a metric of ``search.metrics.METRICS`` other than the spec's: its goal).
        scope: ``last`` (the last report), ``best`` (the best report) or ``avg`` (the mean of all reports).
        top: keep only this many ranked rows (stopped, pending and errored ones are always listed).
        columns: more reported metrics to show (default: the spec's ``columns``).
        bootstrap: resamples of the paired bootstrap test of the top rows against the best (0: no test).
        alpha: p-value under which a row counts as worse than the best.
        pareto: a cost column (e.g. ``beam_steps``): mark the rows on the Pareto front of (metric, cost) and show
            the column (see :func:`mark_front`); None: no front.

    Example:
        >>> ranking = rank("runs/beam_seed_grid", scope="last")  # doctest: +SKIP
        >>> print(format_ranking(ranking, "md"))  # doctest: +SKIP
    """
    run = run_dir if isinstance(run_dir, Run) else read_run(run_dir)
    metric = metric or run.spec.metric.name
    mode = mode or _default_mode(metric, run.spec)
    if mode not in ("max", "min"):
        raise UserError(f"--mode: must be max or min, got {mode!r}")
    if scope not in SCOPES:
        raise UserError(f"--scope: must be one of {', '.join(SCOPES)}, got {scope!r}")
    columns = tuple(c for c in (columns if columns is not None else run.spec.columns) if not c.endswith("_signature"))
    if pareto is not None and pareto not in columns:
        columns = (*columns, pareto)
    trials = run.trials()
    signature, notes = _signature(trials, metric)
    ranking = Ranking(
        metric=metric,
        mode=mode,
        scope=scope,
        params=tuple(p.name for p in run.spec.searched),
        columns=columns,
        rows=order_rows(
            _stopped([_row(t, run, metric, mode, scope, columns) for t in trials], run.cuts_trials), mode, top
        ),
        notes=notes,
        signature=signature,
    )
    ranking = mark_ties(ranking, n_samples=bootstrap, alpha=alpha)
    return mark_front(ranking, pareto) if pareto is not None else ranking


def _row(t: Trial, run: Run, metric: str, mode: str, scope: str, columns: tuple[str, ...]) -> Row:
    return Row(
        trial_id=t.trial_id,
        status=t.status,
        training_iteration=int(t.last_result.get("training_iteration", 0) or 0),
        value=_scoped(t.history(), t.last_result, metric, mode, scope),
        params=trial_params(t.config, run.spec),
        columns={c: t.last_result.get(c) for c in columns},
        error=t.error_line() if t.status == "ERROR" else None,
        path=str(t.path),
        tag=t.tag or None,
    )


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
    ranking = mark_ties(ranking)
    return mark_front(ranking, first.cost) if first.cost is not None else ranking


def order_rows(rows: list[Row], mode: str, top: int | None = None) -> tuple[Row, ...]:
    """Ranked rows best first (at most ``top``), then stopped ones (best first), then the unfinished (running,
    pending, or without a value), then the errored ones. Only the first group may win."""
    sign = -1.0 if mode == "max" else 1.0
    by_value = sorted((r for r in rows if r.value is not None), key=lambda r: sign * r.value)
    ranked = [r for r in by_value if r.status == FINISHED]
    stopped = [r for r in by_value if r.status == "STOPPED"]
    errored = [r for r in rows if r.status == "ERROR"]
    placed = {id(r) for r in (*ranked, *stopped, *errored)}
    unfinished = [r for r in rows if id(r) not in placed]
    return tuple((ranked[:top] if top is not None else ranked) + stopped + unfinished + errored)
