"""Export a sweep's winner as a model's defaults.

- After a decoding sweep: the winning ``generate()`` arguments are merged into ``MODEL_DIR/generation_config.json``
  with ``transformers.GenerationConfig`` (other fields kept), so that a bare ``model.generate()`` uses them.
- After a fine-tune sweep: the winning trial's best checkpoint becomes a complete model directory (weights, tokenizer,
  config), with ``best_hparams.yaml`` and a model-card section in ``README.md``; under PBT also ``pbt_schedule.yaml``,
  since a PBT winner is a schedule of configs, not one config.

Nothing is overwritten silently: every write prints what changes, replaced files and directories are kept as ``.bak``
backups, files are written to a temporary name and renamed into place, and ``dry_run`` only prints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from search.errors import UserError
from search.results import Ranking, Row, flatten, format_ranking, rank, trial_params
from search.spec import Spec

GENERATION_FILE = "generation_config.json"
HPARAMS_FILE = "best_hparams.yaml"
SCHEDULE_FILE = "pbt_schedule.yaml"
CARD_FILE = "README.md"
CARD_ROWS = 10  # rows of the ranked table in the model card


def backup_path(path: Path) -> Path:
    """The first free backup name of ``path``: ``NAME.bak``, then ``NAME.bak2``, ``NAME.bak3``..."""
    candidate, n = path.with_name(path.name + ".bak"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.bak{n}")
    return candidate


def atomic_write(path: Path, text: str) -> Path | None:
    """Write ``text`` to ``path`` through a temporary file renamed into place; back up a previous file.

    Returns:
        The backup of the previous file, or None when there was none.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        backup = None
        if path.exists():
            backup = backup_path(path)
            shutil.copy2(path, backup)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup


# ---------------------------------------------------------------------------------------------------------------------
# generation_config.json


def _generation_config(model_dir: Path):
    from transformers import AutoConfig, GenerationConfig

    if (model_dir / GENERATION_FILE).is_file():
        return GenerationConfig.from_pretrained(model_dir)
    if (model_dir / "config.json").is_file():
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))
    raise UserError(f"{model_dir}: not a model directory (no config.json nor {GENERATION_FILE}); check --to")


def generation_diff(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every field that differs; ``unset`` is generate()'s own default."""
    keys = sorted(
        k for k in set(old) | set(new) if k[0] != "_" and k != "transformers_version" and old.get(k) != new.get(k)
    )

    def show(d: dict, k: str) -> str:
        return json.dumps(d[k]) if k in d and d[k] is not None else "unset"

    return [f"{k}: {show(old, k)} -> {show(new, k)}" for k in keys]


def export_generation(
    model_dir: str | Path, params: dict[str, Any], *, dry_run: bool = False
) -> tuple[list[str], Path | None]:
    """Merge ``generate()`` arguments into ``model_dir/generation_config.json``; keep every other field.

    Args:
        model_dir: a model directory (``config.json``; ``generation_config.json`` is created if missing).
        params: ``generate()`` keyword arguments, e.g. ``{"num_beams": 5, "length_penalty": 1.1}``.
        dry_run: only return the changes.

    Returns:
        The changed fields as ``key: old -> new`` lines (empty: already up to date), and the backup of the previous
        file (None when nothing was written or there was no previous file).

    Raises:
        UserError: not a model directory, a key that is no ``generate()`` argument, or an invalid combination.
    """
    from transformers import GenerationConfig

    model_dir = Path(model_dir)
    old = _generation_config(model_dir)
    known = GenerationConfig().to_dict()
    for key in params:
        if key not in known:
            raise UserError(f"{key}: not a GenerationConfig field, so a bare generate() would not use it; got {key!r}")
    try:
        new = GenerationConfig.from_dict({**old.to_dict(), **params})
        new.validate(strict=True)
    except ValueError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{model_dir / GENERATION_FILE}: the winning values are invalid together: {first}") from None
    # A config marked as derived from the model's config.json may be rebuilt from it at load time; ours is explicit.
    new._from_model_config = False
    changes = generation_diff(old.to_diff_dict(), new.to_diff_dict())
    if not changes or dry_run:
        return changes, None
    return changes, atomic_write(model_dir / GENERATION_FILE, new.to_json_string(use_diff=True))


# ---------------------------------------------------------------------------------------------------------------------
# the winner of a run


def winner_config(row: Row, spec: Spec) -> dict[str, Any]:
    """Every parameter (searched and constant) the winning trial ran with, by dotted name."""
    params_file = Path(row.path or "") / "params.json"
    if not params_file.is_file():
        return dict(row.params)
    return trial_params(json.loads(params_file.read_text(encoding="utf-8")), spec, constants=True)


def generate_args(row: Row, spec: Spec) -> dict[str, Any]:
    """The ``generate()`` arguments the winning decoding trial was scored with: its parameters, and for the ``decode``
    trainable also the arguments it shares between trials (``settings.max_new_tokens``, ``settings.generate``)."""
    params = winner_config(row, spec)
    if spec.trainable != "decode":
        return params
    from search.trainables.decode import SETTING_DEFAULTS

    settings = {**SETTING_DEFAULTS, **spec.settings}
    # max_length=None as in the trainable: with both set, every generate() call warns that max_new_tokens wins
    shared = {"max_new_tokens": settings["max_new_tokens"], "max_length": None}
    return {**shared, **dict(settings["generate"] or {}), **params}


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"opt.lr": 1}`` -> ``{"opt": {"lr": 1}}`` (the shape a trainable's config has)."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples as YAML-safe Python values."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def hparams_yaml(flat: dict[str, Any], spec: Spec, row: Row, ranking: Ranking) -> str:
    """``best_hparams.yaml``: the winner's parameters, with the ``search run --set`` line that reruns them."""
    sets = " ".join(f"--set 'parameters.{k}={{value: {json.dumps(_plain(v))}}}'" for k, v in flat.items())
    head = [
        f"# Best trial {row.trial_id} of {spec.name}: {ranking.metric}={row.value} ({ranking.mode}, scope={ranking.scope})",
        "# A training script reads this mapping as its config; to rerun it as a sweep of one:",
        f"#   search run {spec.file} {sets}",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(_plain(nested(flat)), sort_keys=False)


# ---------------------------------------------------------------------------------------------------------------------
# PBT schedule


def _history(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _step_at(history: list[dict], iteration: int) -> Any:
    rows = [r for r in history if r.get("training_iteration") == iteration and "step" in r]
    return rows[-1]["step"] if rows else None


def _lineage(lines: list[list], tag: str, last_iteration: int) -> list[tuple[int, dict]] | None:
    """``[(after_iteration, config)]`` that produced ``tag``'s state at ``last_iteration``, from ``pbt_global.txt``.

    A line ``[target, clone, target_iter, clone_iter, clone_config, new_config]`` says: the target took the clone's
    checkpoint at ``clone_iter`` and went on with ``new_config``. Only exploits before the target's last report count
    (one that restored weights of the last iteration or later changed nothing that was reported); the clone's own
    history before is followed back.
    """
    changes: list[tuple[int, dict]] = []
    before, first = len(lines), None
    while True:
        # Ray logs the target's last known iteration, which can lag behind by one: check the clone's as well.
        found = [i for i in range(before) if lines[i][0] == tag and max(lines[i][2], lines[i][3]) < last_iteration]
        if not found:
            break
        i = found[-1]
        _, clone, _, clone_iteration, clone_config, new_config = lines[i]
        changes.append((int(clone_iteration), new_config))
        tag, last_iteration, before, first = clone, int(clone_iteration), i, clone_config
    return [(0, first), *reversed(changes)] if changes else None


def pbt_schedule(run_dir: str | Path, row: Row, spec: Spec) -> list[dict[str, Any]]:
    """The configs a PBT trial's weights were trained with, from which report on: ``[{after_iteration, from_step?,
    config}]``.

    Read from Ray's ``pbt_global.txt`` (every exploit, in order), following the trial's lineage back through the trials
    it copied; without exploits, from the configs in the trial's own reports. ``after_iteration`` k: the config applies
    from report k+1 on; ``from_step``: the ``step`` the trial reported at iteration k.
    """
    history = _history(Path(row.path or ""))
    log = Path(run_dir) / "pbt_global.txt"
    changes = None
    if log.is_file() and row.tag:
        lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        changes = _lineage(lines, row.tag, row.training_iteration)
    if changes is None:
        changes = []
        for result in history:
            config = result.get("config") or {}
            if not changes or trial_params(config, spec) != trial_params(changes[-1][1], spec):
                changes.append((int(result.get("training_iteration", 1)) - 1, config))
    schedule = []
    for after, config in changes:
        entry: dict[str, Any] = {"after_iteration": after}
        step = _step_at(history, after) if after else 0
        if step is not None:
            entry["from_step"] = step
        entry["config"] = _plain(nested(trial_params(config, spec)))
        schedule.append(entry)
    return schedule


# ---------------------------------------------------------------------------------------------------------------------
# model card


def card_section(ranking: Ranking, spec: Spec, title: str, rows: int = CARD_ROWS) -> str:
    """A model-card section: the ranked table (Markdown), the sacreBLEU signature and the data used."""
    table = format_ranking(replace(ranking, rows=ranking.rows[:rows]), "md")
    data = yaml.safe_dump(_plain(dict(spec.data)), default_flow_style=True, width=10**6).strip() if spec.data else "-"
    settings = {k: v for k, v in spec.settings.items() if k in ("eval_size", "train_size", "max_steps", "limit")}
    lines = [f"## {title}", "", table, "", f"- Data: `{data}`"]
    if settings:
        lines.append(f"- Settings: `{json.dumps(_plain(settings))}`")
    if ranking.signature:
        lines.append(f"- sacreBLEU signature: `{ranking.signature}`")
    lines.append(f"- Sweep: `{spec.name}` ({spec.method}, scheduler {spec.scheduler.type}), from `{spec.file}`")
    return "\n".join(lines) + "\n"


def card_with_section(old: str, key: str, section: str) -> str:
    """``old`` (a README) with the section between ``<!-- search:KEY -->`` markers replaced or appended."""
    begin, end = f"<!-- search:{key} -->", f"<!-- /search:{key} -->"
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    if begin in old and end in old:
        head, _, rest = old.partition(begin)
        return head + block + rest.partition(end)[2].lstrip("\n")
    return (old.rstrip() + "\n\n" if old.strip() else "") + block


# ---------------------------------------------------------------------------------------------------------------------
# the verbs


def best_checkpoint(run_dir: Path, row: Row, metric: str, mode: str) -> Path:
    """The winning trial's best kept checkpoint directory (by ``metric``)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(run_dir))
    trial = next((t for t in analysis.trials if t.trial_id == row.trial_id), None)
    checkpoint = analysis.get_best_checkpoint(trial, metric, mode) if trial is not None else None
    if checkpoint is None:
        raise UserError(f"{run_dir}: trial {row.trial_id} kept no checkpoint; nothing to export as a model")
    return Path(checkpoint.path)


def _replace_dir(staged: Path, target: Path) -> Path | None:
    backup = None
    if target.exists():
        backup = backup_path(target)
        target.rename(backup)
    staged.rename(target)
    return backup


def export_model(
    run_dir: Path,
    ranking: Ranking,
    spec: Spec,
    to: Path,
    *,
    dry_run: bool = False,
    force: bool = False,
    row: Row | None = None,
) -> list[str]:
    """Write the winning fine-tune trial (or ``row``) as a model directory with ``best_hparams.yaml``, a card section
    and, under PBT, ``pbt_schedule.yaml``. Returns the lines to print."""
    from transformers.utils import logging as hf_logging

    from search.checkpoints import export_model_dir

    hf_logging.disable_progress_bar()
    row = row or ranking.best
    checkpoint = best_checkpoint(run_dir, row, ranking.metric, ranking.mode)
    flat = winner_config(row, spec)
    files = {}
    if spec.scheduler.type == "pbt":
        steps = pbt_schedule(run_dir, row, spec)
        # the config in effect at the winner's last report (a PBT exploit after it changed nothing reported)
        flat.update(flatten(steps[-1]["config"]))
        schedule = {"trial_id": row.trial_id, "metric": ranking.metric, "schedule": steps}
        files[SCHEDULE_FILE] = "# The winner of a PBT sweep is this schedule of configs\n" + yaml.safe_dump(
            schedule, sort_keys=False
        )
    files[HPARAMS_FILE] = hparams_yaml(flat, spec, row, ranking)
    old_card = (to / CARD_FILE).read_text(encoding="utf-8") if (to / CARD_FILE).is_file() else ""
    files[CARD_FILE] = card_with_section(old_card, "finetune", card_section(ranking, spec, f"Fine-tuning: {spec.name}"))
    which = "best trial" if row is ranking.best else "trial"
    lines = [f"{which} {row.trial_id}: {ranking.metric}={row.value}, checkpoint {checkpoint}"]
    lines += [f"  {k} = {json.dumps(_plain(v))}" for k, v in flat.items()]
    if to.exists() and any(to.iterdir()) and not force:
        raise UserError(f"{to}: exists and is not empty; pass --force to replace it (the old one is kept as .bak)")
    what = ["model weights, config, tokenizer", *files]
    if dry_run:
        replaced = f" (would replace {to}, kept as {backup_path(to).name})" if to.exists() else ""
        return lines + [f"dry run: would write {to}{replaced}: {', '.join(what)}"]
    to.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
    try:
        try:
            export_model_dir(checkpoint, staged)
        except FileNotFoundError as e:
            raise UserError(f"{run_dir}: cannot export trial {row.trial_id} as a model: {e}") from None
        for name, text in files.items():
            (staged / name).write_text(text, encoding="utf-8")
        backup = _replace_dir(staged, to)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    lines.append(f"wrote {to}: {', '.join(what)}")
    if backup is not None:
        lines.append(f"the previous {to.name} is kept as {backup}")
    return lines


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
    """Export the winner of a run: generation defaults after a decoding sweep, a model directory after a fine-tune.

    Args:
        run_dir: a finished (or partial) run directory.
        to: the model directory (decoding sweep: an existing one, whose ``generation_config.json`` is updated;
            fine-tune sweep: the directory to write, which must not exist unless ``force``).
        dry_run: print what would change, write nothing.
        force: replace an existing model directory (kept as ``.bak``) after a fine-tune sweep.
        scope: ranking scope (``last | best | avg``).
        trial: export this trial instead of the winner (any trial that left a checkpoint or reported the metric).
        rank_fn: the ranking function (the pipeline passes one over several runs).

    Returns:
        The lines to print: the winner, and the diff or the files written.

    Example:
        >>> for line in export("runs/decode_seed_grid", "exports/bible-en-es"):  # doctest: +SKIP
        ...     print(line)
        num_beams: 1 -> 5
    """
    from search.runner import load_saved_spec

    run_dir, to = Path(run_dir).resolve(), Path(to).resolve()
    spec = load_saved_spec(run_dir)
    ranking = rank_fn(run_dir, scope=scope)
    if trial is None:
        row = ranking.best
        if row is None:
            raise UserError(f"{run_dir}: no finished trial reported {ranking.metric}; nothing to export")
    else:
        row = next((r for r in ranking.rows if r.trial_id == trial), None)
        if row is None or row.value is None:
            known = ", ".join(r.trial_id for r in ranking.rows if r.value is not None)
            raise UserError(f"--trial: no trial {trial!r} with {ranking.metric} in {run_dir}; trials: {known}")
    if spec.trainable != "decode" and (Path(row.path or "") / "params.json").is_file():
        if any(Path(row.path).glob("checkpoint_*")):
            return export_model(run_dir, ranking, spec, to, dry_run=dry_run, force=force, row=row)
    params = generate_args(row, spec)
    which = "best trial" if trial is None else "trial"
    lines = [f"{which} {row.trial_id}: {ranking.metric}={row.value} ({ranking.mode}, scope={scope})"]
    changes, backup = export_generation(to, params, dry_run=dry_run)
    target = to / GENERATION_FILE
    if not changes:
        return lines + [f"{target}: already holds the winning values; nothing written"]
    lines += [f"{target}: {'would change' if dry_run else 'changed'}"] + [f"  {c}" for c in changes]
    return lines + ([f"the previous file is kept as {backup}"] if backup else [])


__all__ = [
    "atomic_write",
    "backup_path",
    "card_section",
    "card_with_section",
    "export",
    "export_generation",
    "export_model",
    "generate_args",
    "pbt_schedule",
    "winner_config",
]
