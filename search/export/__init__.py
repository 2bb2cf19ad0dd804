"""Export a sweep's winner as a model's defaults. Nothing is overwritten silently: every write says what changes,
replaced files and directories are kept as ``.bak``, everything is staged and renamed into place, ``dry_run`` only
prints.

``generation`` merges a decoding sweep's winning ``generate()`` arguments into ``generation_config.json``;
``model_dir`` writes a fine-tune sweep's best checkpoint as a model directory with ``best_hparams.yaml``; ``lineage``
turns a PBT winner into its schedule of configs; ``card`` writes the model card the Hub reads (front matter with the
``model-index``, a section per sweep); ``values`` holds what the winner ran with.

Which trial is exported: the winner on the metric (``prefer="best"``), or the cheapest trial the paired bootstrap
cannot separate from it (``prefer="fastest-tied"``, by a reported cost column such as ``beam_steps``): decoding with
4 beams is often statistically as good as with 15 at a third of the cost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from search.errors import UserError
from search.export.card import CARD_FILE, CardSection, card_section, card_with_section, write_card
from search.export.generation import GENERATION_FILE, export_generation
from search.export.lineage import pbt_schedule
from search.export.model_dir import Extras, best_checkpoint, export_model
from search.export.values import generate_args, portable_path, winner_config
from search.files import atomic_write
from search.report import DEFAULT_COST, FINISHED, Ranking, Row, mark_ties, rank
from search.rundir import read_run

PREFERENCES = ("best", "fastest-tied")  # which trial an export takes: the metric's winner, or the cheapest tied one


def check_prefer(prefer: str, where: str = "--prefer") -> str:
    """``prefer`` if it is one of :data:`PREFERENCES`, else a one-line UserError naming ``where``."""
    if prefer not in PREFERENCES:
        raise UserError(f"{where}: must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    return prefer


def _describe(row: Row, ranking: Ranking, cost: str) -> str:
    """``trial_id (num_beams=4 length_penalty=1.0): bleu=39.1, beam_steps=2400``."""
    params = " ".join(f"{k}={v}" for k, v in row.params.items())
    return f"{row.trial_id} ({params}): {ranking.metric}={row.value}, {cost}={row.columns.get(cost)}"


def fastest_tied(ranking: Ranking, cost: str = DEFAULT_COST) -> tuple[Row, list[str]]:
    """The cheapest ranked row by ``cost`` that the ranking's paired bootstrap marked tied with the best (p >= alpha;
    the better on the metric among equal costs), and the lines that say which won, which is chosen and why.

    Falls back to the best (saying why) when the ranking has no tie marks or no tied row is cheaper.

    Example:
        >>> rows = (Row("a", FINISHED, 1, 39.2, {"num_beams": 15}, {"beam_steps": 900}, tied=True),
        ...         Row("b", FINISHED, 1, 39.1, {"num_beams": 4}, {"beam_steps": 250}, p_value=0.4, tied=True))
        >>> r = Ranking("bleu", "max", "last", ("num_beams",), ("beam_steps",), rows, bootstrap="paired bootstrap")
        >>> fastest_tied(r)[0].trial_id
        'b'
    """
    best = ranking.best
    if best is None:
        raise UserError(f"no finished trial reported {ranking.metric}; nothing to export")
    won = f"best on {ranking.metric} ({ranking.mode}): {_describe(best, ranking, cost)}"
    if ranking.bootstrap is None:
        why = "; ".join(n for n in ranking.notes if "bootstrap" in n) or f"{ranking.metric} has no paired bootstrap"
        return best, [won, f"exported the best: no tie marks to prefer a cheaper config ({why})"]
    costed = [r for r in ranking.ranked if r.tied and _number(r.columns.get(cost))]
    if not costed:
        return best, [won, f"exported the best: no trial tied with it reports {cost}"]
    chosen = min(costed, key=lambda r: r.columns[cost])  # min keeps the first (better-ranked) of equal costs
    best_cost, chosen_cost = best.columns.get(cost), chosen.columns[cost]
    if chosen is best or (_number(best_cost) and not chosen_cost < best_cost):
        return best, [won, f"exported the best: no config tied with it (of {len(costed)}) is cheaper in {cost}"]
    cheaper = f"{best_cost / chosen_cost:.3g}x cheaper in {cost}" if _number(best_cost) and chosen_cost > 0 else ""
    return chosen, [
        won,
        f"exported the fastest tied: {_describe(chosen, ranking, cost)}",
        f"  why: {cheaper or f'the best reports no {cost}'}, and the paired bootstrap cannot separate it from the best (p={chosen.p_value:.3g} >= "
        f"alpha, {len(costed)} configs tied)",
    ]


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _chosen(ranking: Ranking, run_dir: str, trial: str | None, force: bool) -> Row:
    """The winner, or the trial asked for; an errored or unfinished one only with ``force``."""
    if trial is None:
        if ranking.best is None:
            raise UserError(f"{run_dir}: no finished trial reported {ranking.metric}; nothing to export")
        return ranking.best
    row = next((r for r in ranking.rows if r.trial_id == trial), None)
    if row is None or row.value is None:
        known = ", ".join(r.trial_id for r in ranking.rows if r.value is not None)
        raise UserError(f"--trial: no trial {trial!r} with {ranking.metric} in {run_dir}; trials: {known}")
    if row.status not in (FINISHED, "STOPPED") and not force:
        why = f"errored ({row.error})" if row.status == "ERROR" else f"did not finish (status {row.status})"
        raise UserError(f"--trial: trial {trial} {why}; its results may be partial; pass --force to export it anyway")
    return row


def export(
    run_dir: str | Path,
    to: str | Path,
    *,
    dry_run: bool = False,
    force: bool = False,
    scope: str = "last",
    trial: str | None = None,
    prefer: str = "best",
    cost: str = DEFAULT_COST,
    rank_fn: Callable[..., Ranking] = rank,
) -> list[str]:
    """Export the winner of a run: a model directory when the trial kept checkpoints (a fine-tune sweep), else its
    ``generate()`` arguments as the defaults of the model in ``to`` (a decoding sweep).

    Args:
        run_dir: a finished (or partial) run directory, or its storage URI.
        to: the model directory (decoding sweep: an existing one, whose ``generation_config.json`` is updated;
            fine-tune sweep: the directory to write, which must not exist unless ``force``).
        dry_run: print what would change, write nothing.
        force: replace an existing model directory (kept as ``.bak``) after a fine-tune sweep, and export a
            ``trial`` that errored or did not finish.
        scope: ranking scope (``last | best | avg``).
        trial: export this trial instead of the winner (any trial that left a checkpoint or reported the metric).
        prefer: ``best`` (the winner on the metric) or ``fastest-tied`` (the cheapest trial by ``cost`` that the
            paired bootstrap, run then on every finished trial, cannot separate from the winner).
        cost: the reported column that ``fastest-tied`` minimizes (``beam_steps``: decoder steps x beams).
        rank_fn: the ranking function.

    Returns:
        The lines to print: the winner, and the diff or the files written.

    Example:
        >>> for line in export("runs/decode_seed_grid", "exports/bible-en-es"):  # doctest: +SKIP
        ...     print(line)
        num_beams: 1 -> 5
    """
    run, to = read_run(run_dir), Path(to).resolve()
    if check_prefer(prefer) == "fastest-tied":
        if trial is not None:
            raise UserError("--prefer: fastest-tied picks the trial itself; drop --trial, or --prefer fastest-tied")
        # Every finished trial is tested against the best, not only the top rows: a cheap config may rank low.
        ranking = rank_fn(run, scope=scope, bootstrap=0, pareto=cost)
        ranking = mark_ties(ranking, top=len(ranking.ranked))
        row, lines = fastest_tied(ranking, cost)
    else:
        ranking = rank_fn(run, scope=scope)
        row, lines = _chosen(ranking, run.location, trial, force), []
    if row.path is not None and any(p.is_dir() for p in Path(row.path).glob("checkpoint_*")):
        return lines + export_model(run, ranking, row, to, dry_run=dry_run, force=force)
    which = {"best": "best trial", "fastest-tied": "fastest tied trial"}[prefer] if trial is None else "trial"
    lines += [f"{which} {row.trial_id}: {ranking.metric}={row.value} ({ranking.mode}, scope={scope})"]
    changes, backup = export_generation(to, generate_args(row, run.spec), dry_run=dry_run)
    target = to / GENERATION_FILE
    if not changes:
        return lines + [f"{target}: already holds the winning values; nothing written"]
    lines += [f"{target}: {'would change' if dry_run else 'changed'}"] + [f"  {c}" for c in changes]
    return lines + ([f"the previous file is kept as {backup}"] if backup else [])


__all__ = [
    "CARD_FILE", "GENERATION_FILE", "CardSection", "Extras", "atomic_write", "best_checkpoint", "card_section",
    "card_with_section", "check_prefer", "export", "export_generation", "export_model", "fastest_tied",
    "generate_args", "PREFERENCES", "pbt_schedule",
    "portable_path", "winner_config", "write_card",
]  # fmt: skip
