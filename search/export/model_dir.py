"""A fine-tune sweep's winner as a model directory: its best checkpoint's weights, tokenizer and config, with
``best_hparams.yaml``, a model-card section and, under PBT, ``pbt_schedule.yaml`` (a PBT winner is a schedule of
configs, not one config). Written into a staged directory and renamed into place; a replaced one is kept as ``.bak``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search.errors import UserError
from search.export.card import CARD_FILE, CardSection, card_section, write_card
from search.export.generation import GENERATION_FILE, export_generation
from search.export.lineage import pbt_schedule
from search.export.values import nested, portable_path, winner_config, yaml_safe
from search.files import atomic_write, backup_path, publish_dir, staged_dir
from search.report import Ranking, Row, flatten
from search.rundir import Run

HPARAMS_FILE = "best_hparams.yaml"
SCHEDULE_FILE = "pbt_schedule.yaml"


@dataclass(frozen=True)
class Extras:
    """What a model export adds beyond the fine-tune sweep: the winning ``generate()`` defaults of a decoding sweep
    on the model, and model-card sections ``{key: section}`` (the pipeline's decoding table)."""

    generation: dict[str, Any] = field(default_factory=dict)
    card_sections: dict[str, CardSection] = field(default_factory=dict)


def hparams_yaml(flat: dict[str, Any], run: Run, row: Row, ranking: Ranking) -> str:
    """``best_hparams.yaml``: the winner's parameters, with the ``search run --set`` line that reruns them (the sweep
    file named relative to the project)."""
    spec = run.spec
    sets = " ".join(f"--set 'parameters.{k}={{value: {json.dumps(yaml_safe(v))}}}'" for k, v in flat.items())
    head = [
        f"# Best trial {row.trial_id} of {spec.name}: {ranking.metric}={row.value} ({ranking.mode}, scope={ranking.scope})",
        "# A training script reads this mapping as its config; to rerun it as a sweep of one:",
        f"#   search run {portable_path(spec.file, spec.file)} {sets}",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(yaml_safe(nested(flat)), sort_keys=False)


def best_checkpoint(run: Run, row: Row, metric: str, mode: str) -> Path:
    """The trial's best kept checkpoint directory (by ``metric``)."""
    trial = run.trial(row.trial_id)
    checkpoint = trial.best_checkpoint(metric, mode) if trial is not None else None
    if checkpoint is None:
        raise UserError(f"{run.location}: trial {row.trial_id} kept no checkpoint; nothing to export as a model")
    return run.local(checkpoint)


def _side_files(run: Run, ranking: Ranking, row: Row, to: Path, extras: Extras) -> tuple[dict[str, Any], dict]:
    """The winner's flat config and the files written beside the weights (name -> text)."""
    flat, files = winner_config(row, run.spec), {}
    if run.spec.scheduler.type == "pbt":
        steps = pbt_schedule(run.dir, row, run.spec)
        # the config in effect at the winner's last report (a PBT exploit after it changed nothing reported)
        flat.update(flatten(steps[-1]["config"]))
        schedule = {"trial_id": row.trial_id, "metric": ranking.metric, "schedule": steps}
        files[SCHEDULE_FILE] = "# The winner of a PBT sweep is this schedule of configs\n" + yaml.safe_dump(
            schedule, sort_keys=False
        )
    files[HPARAMS_FILE] = hparams_yaml(flat, run, row, ranking)
    card = (to / CARD_FILE).read_text(encoding="utf-8") if (to / CARD_FILE).is_file() else ""
    finetune = card_section(ranking, run.spec, f"Fine-tuning: {run.spec.name}", winner=row)
    files[CARD_FILE] = write_card(card, {"finetune": finetune, **extras.card_sections}, to.name, str(to / CARD_FILE))
    return flat, files


def export_model(
    run: Run, ranking: Ranking, row: Row, to: Path, *, dry_run: bool = False, force: bool = False,
    extras: Extras = Extras(),
) -> list[str]:  # fmt: skip
    """Write trial ``row`` of a fine-tune run as a model directory; returns the lines to print."""
    from transformers.utils import logging as hf_logging

    from search.trainables.checkpoints import export_model_dir

    hf_logging.disable_progress_bar()
    checkpoint = best_checkpoint(run, row, ranking.metric, ranking.mode)
    flat, files = _side_files(run, ranking, row, to, extras)
    which = "best trial" if row is ranking.best else "trial"
    lines = [f"{which} {row.trial_id}: {ranking.metric}={row.value}, checkpoint {checkpoint}"]
    lines += [f"  {k} = {json.dumps(yaml_safe(v))}" for k, v in flat.items()]
    if to.exists() and any(to.iterdir()) and not force:
        raise UserError(f"{to}: exists and is not empty; pass --force to replace it (the old one is kept as .bak)")
    what = ["model weights, config, tokenizer", *([GENERATION_FILE] if extras.generation else []), *files]
    if dry_run:
        replaced = f" (would replace {to}, kept as {backup_path(to).name})" if to.exists() else ""
        return lines + [f"dry run: would write {to}{replaced}: {', '.join(what)}"]
    with staged_dir(to.parent, to.name) as staged:
        try:
            export_model_dir(checkpoint, staged)
        except FileNotFoundError as e:
            raise UserError(f"{run.dir}: cannot export trial {row.trial_id} as a model: {e}") from None
        if extras.generation:
            changes, _ = export_generation(staged, extras.generation, backup=False)
            lines += [f"  {GENERATION_FILE}: {change}" for change in changes]
        for name, text in files.items():
            atomic_write(staged / name, text)
        backup = publish_dir(staged, to)
    lines.append(f"wrote {to}: {', '.join(what)}")
    if backup is not None:
        lines.append(f"the previous {to.name} is kept as {backup}")
    return lines


__all__ = ["HPARAMS_FILE", "SCHEDULE_FILE", "Extras", "best_checkpoint", "export_model", "hparams_yaml"]
