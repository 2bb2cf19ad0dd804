"""Export a sweep's winner as a model's defaults. Nothing is overwritten silently: every write says what changes,
replaced files and directories are kept as ``.bak``, everything is staged and renamed into place, ``dry_run`` only
prints.

``generation`` merges a decoding sweep's winning ``generate()`` arguments into ``generation_config.json``;
``model_dir`` writes a fine-tune sweep's best checkpoint as a model directory with ``best_hparams.yaml``; ``lineage``
turns a PBT winner into its schedule of configs; ``card`` writes the model card the Hub reads (front matter with the
``model-index``, a section per sweep); ``values`` holds what the winner ran with.
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
from search.report import FINISHED, Ranking, Row, rank
from search.rundir import read_run


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
        rank_fn: the ranking function.

    Returns:
        The lines to print: the winner, and the diff or the files written.

    Example:
        >>> for line in export("runs/decode_seed_grid", "exports/bible-en-es"):  # doctest: +SKIP
        ...     print(line)
        num_beams: 1 -> 5
    """
    run, to = read_run(run_dir), Path(to).resolve()
    ranking = rank_fn(run, scope=scope)
    row = _chosen(ranking, run.location, trial, force)
    if row.path is not None and any(p.is_dir() for p in Path(row.path).glob("checkpoint_*")):
        return export_model(run, ranking, row, to, dry_run=dry_run, force=force)
    which = "best trial" if trial is None else "trial"
    lines = [f"{which} {row.trial_id}: {ranking.metric}={row.value} ({ranking.mode}, scope={scope})"]
    changes, backup = export_generation(to, generate_args(row, run.spec), dry_run=dry_run)
    target = to / GENERATION_FILE
    if not changes:
        return lines + [f"{target}: already holds the winning values; nothing written"]
    lines += [f"{target}: {'would change' if dry_run else 'changed'}"] + [f"  {c}" for c in changes]
    return lines + ([f"the previous file is kept as {backup}"] if backup else [])


__all__ = [
    "CARD_FILE", "GENERATION_FILE", "CardSection", "Extras", "atomic_write", "best_checkpoint", "card_section",
    "card_with_section", "export", "export_generation", "export_model", "generate_args", "pbt_schedule",
    "portable_path", "winner_config", "write_card",
]  # fmt: skip
