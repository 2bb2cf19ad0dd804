"""The end-to-end pipeline: fine-tune sweep -> top-k checkpoints -> a decoding sweep on each -> rank -> export.

A pipeline file names two sweep files and what joins them::

    name: bible-en-es
    finetune: finetune_asha.yaml       # a sweep file of the finetune trainable (relative to this file)
    decode: decode_seed_grid.yaml      # a sweep file of the decode trainable; its `model` is set to each checkpoint
    top_k: 2                           # fine-tune trials whose best checkpoint gets a decoding sweep
    export: ../models/bible-en-es      # optional: the winner's model directory (default: the pipeline's dir/model)
    storage: ../runs                   # the pipeline's directory is STORAGE/NAME (NAME-2, ... when taken)
    finetune_set: [settings.max_steps=800]  # --set overrides of the fine-tune sweep
    decode_set: []                     # --set overrides of the decoding sweeps
    smoke_test: {top_k: 1}             # merged over the file with --smoke-test (the sweeps get theirs too)
    prefer: best                       # or fastest-tied: the cheapest config (beam_steps) tied with the best

This module only orchestrates: ``search.tune`` runs the sweeps, ``search.trainables.checkpoints`` turns checkpoints
into model directories, ``search.report`` ranks and draws, ``search.export`` writes the winner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.checks import is_int, require_storage
from search.errors import SpecError, UserError
from search.files import atomic_write
from search.report import DEFAULT_COST, Ranking, Row, combine, format_ranking, mark_ties, plot, rank
from search.rundir import claim_run_dir, read_run
from search.spec import Spec, deep_merge, load_spec, read_yaml
from search.storage import Remote, is_uri, local_path, mirror_dir

KEYS = (
    "name", "finetune", "decode", "top_k", "export", "storage", "finetune_set", "decode_set", "smoke_test", "prefer",
)  # fmt: skip


def is_pipeline(raw: dict) -> bool:
    """Whether a YAML mapping is a pipeline file (it names a fine-tune and a decode sweep) rather than a sweep."""
    return "finetune" in raw and "decode" in raw


@dataclass(frozen=True)
class Pipeline:
    file: str
    name: str
    finetune: Path
    decode: Path
    top_k: int
    export: Path | None  # None: the pipeline directory's model/
    storage: str  # a directory, or a storage URI
    finetune_set: tuple[str, ...]
    decode_set: tuple[str, ...]
    smoke_test: bool
    prefer: str = "best"  # which decoding config is exported: search.export.PREFERENCES


def _path(raw: dict, key: str, file: str, base: Path, must_exist: bool) -> Path:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(file, key, f"must be a path relative to the file, got {value!r}")
    path = (base / value).resolve()
    if must_exist and not path.is_file():
        raise SpecError(file, key, f"file not found: {path}; the path is relative to {file}")
    return path


def _storage(raw: dict, file: str, base: Path) -> str:
    value = require_storage(raw.get("storage", "runs"), file, "storage")
    return value if is_uri(value) else str((base / value).resolve())


def _sets(raw: dict, key: str, file: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise SpecError(file, key, f"must be a list of KEY.PATH=VALUE strings, got {value!r}")
    return tuple(value)


def _prefer(raw: dict, file: str) -> str:
    from search.export import PREFERENCES

    value = raw.get("prefer", "best")
    if value not in PREFERENCES:
        raise SpecError(file, "prefer", f"must be one of {', '.join(PREFERENCES)}, got {value!r}")
    return value


def load_pipeline(file: str | Path, *, smoke_test: bool = False) -> Pipeline:
    """Read and check a pipeline file, and load both sweep files to check them too (nothing runs)."""
    file = str(file)
    raw = read_yaml(file)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SpecError(file, unknown[0], f"unknown key; valid keys are {', '.join(KEYS)}")
    if smoke_test:
        smoke = raw.get("smoke_test") or {}
        if not isinstance(smoke, dict):
            raise SpecError(file, "smoke_test", f"must be a mapping merged over the file, got {smoke!r}")
        raw = deep_merge(raw, smoke)
    base = Path(file).resolve().parent
    top_k = raw.get("top_k", 2)
    if not is_int(top_k) or top_k < 1:
        raise SpecError(file, "top_k", f"must be an integer >= 1, got {top_k!r}")
    pipeline = Pipeline(
        file=file,
        name=str(raw.get("name") or Path(file).stem),
        finetune=_path(raw, "finetune", file, base, True),
        decode=_path(raw, "decode", file, base, True),
        top_k=top_k,
        export=_path(raw, "export", file, base, False) if raw.get("export") is not None else None,
        storage=_storage(raw, file, base),
        finetune_set=_sets(raw, "finetune_set", file),
        decode_set=_sets(raw, "decode_set", file),
        smoke_test=smoke_test,
        prefer=_prefer(raw, file),
    )
    from search.tune import check_spec

    finetune = finetune_spec(pipeline)
    if finetune.trainable != "finetune":
        raise SpecError(file, "finetune", f"must be a sweep of the finetune trainable, got {finetune.trainable!r}")
    check_spec(finetune)
    decode = decode_spec(pipeline, "MODEL_DIR")
    if decode.trainable != "decode":
        raise SpecError(file, "decode", f"must be a sweep of the decode trainable, got {decode.trainable!r}")
    check_spec(decode)
    return pipeline


def finetune_spec(p: Pipeline) -> Spec:
    return load_spec(p.finetune, smoke_test=p.smoke_test, overrides=list(p.finetune_set))


def decode_spec(p: Pipeline, model_dir: str) -> Spec:
    return load_spec(p.decode, smoke_test=p.smoke_test, overrides=[*p.decode_set, f"model={model_dir}"])


@dataclass(frozen=True)
class Where:
    """The pipeline directory: ``root`` where the sweeps write (a path or remote storage), ``local`` where the
    pipeline writes its own files first (``root`` itself, or the remote root's local mirror)."""

    root: Path | Remote
    local: Path

    @classmethod
    def claim(cls, storage: str, name: str) -> Where:
        base = Remote.parse(storage) if is_uri(storage) else local_path(storage)
        root = claim_run_dir(base, name)
        return cls(root, mirror_dir(root) if isinstance(root, Remote) else root)

    def share(self, local: Path) -> str:
        """A file or directory written under ``local``, as every node reads it (uploaded to remote storage)."""
        if isinstance(self.root, Path):
            return str(local)
        files = [local] if local.is_file() else [f for f in local.rglob("*") if f.is_file()]
        self.root.upload(self.local, files)
        return str(self.root.child(str(local.relative_to(self.local))))


def _finetune(p: Pipeline, root: Where, address: str | None, out: Any) -> tuple[Any, Ranking, list[Row]]:
    """Step 1: the fine-tune sweep, its ranked table and its top-k trials."""
    from search.tune import run

    out(f"[1/4] fine-tune sweep: {p.finetune}")
    _, ft_dir = run(finetune_spec(p), address=address, storage=str(root.root), name="finetune")
    ranking = rank(ft_dir)
    out(format_ranking(ranking, "table"))
    top = list(ranking.ranked[: p.top_k])
    if not top:
        raise UserError(f"{ft_dir}: no fine-tune trial finished with {ranking.metric}; see the table above")
    return ft_dir, ranking, top


def _candidates(ft_dir: Any, ranking: Ranking, top: list[Row], root: Where, out: Any) -> dict[str, str]:
    """Step 2: the best checkpoint of each top trial as a model directory (on the storage, when it is remote, so
    that the decoding trials on every node read it)."""
    from transformers.utils import logging as hf_logging

    from search.export import best_checkpoint
    from search.trainables.checkpoints import export_model_dir

    hf_logging.disable_progress_bar()
    out(f"[2/4] best checkpoints of the top {len(top)} trials -> model directories")
    run, models = read_run(ft_dir), {}
    for row in top:
        checkpoint = best_checkpoint(run, row, ranking.metric, ranking.mode)
        models[row.trial_id] = root.share(export_model_dir(checkpoint, root.local / "candidates" / row.trial_id))
        out(f"  {row.trial_id} ({ranking.metric}={row.value:.4g}): {models[row.trial_id]}")
    return models


def _export_winner(ft_dir: Any, ft_ranking: Ranking, top: list[Row], decode: Ranking, decode_runs: dict, target: Path,
                   force: bool, prefer: str = "best") -> list[str]:  # fmt: skip
    """Step 4: the winning checkpoint as a model directory, with the winning decoding config as its defaults
    (``prefer``: the best, or the cheapest config tied with it, ``search.export.fastest_tied``)."""
    from search.export import Extras, card_section, export_model, fastest_tied, generate_args

    if decode.best is None:
        raise UserError(f"{target.parent}: no decoding trial finished with {decode.metric}; see the decode runs")
    winner, lines = decode.best, []
    if prefer == "fastest-tied":  # every finished config tested against the best: a cheap one may rank low
        winner, lines = fastest_tied(mark_ties(decode, top=len(decode.ranked)), decode.cost or DEFAULT_COST)
    trial_id = winner.params["checkpoint"]
    decode_spec = read_run(decode_runs[trial_id]).spec
    title = f"Decoding: {decode_spec.name} on the top {len(top)} checkpoints"
    extras = Extras(
        generation=generate_args(winner, decode_spec),
        # the card scores the exported config, and says why it is not the best one
        card_sections={"decode": card_section(decode, decode_spec, title, winner=winner, notes=tuple(lines))},
    )
    ft_row = next(r for r in top if r.trial_id == trial_id)
    return lines + export_model(read_run(ft_dir), ft_ranking, ft_row, target, force=force, extras=extras)


def run_pipeline(
    p: Pipeline, *, address: str | None = None, storage: str | None = None, force: bool = False, out: Any = print,
    prefer: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the whole pipeline and print the final table and where the exported model is.

    ``prefer`` (default: the file's ``prefer:``) picks the exported decoding config: ``best`` or ``fastest-tied``.

    Returns:
        ``{"dir", "finetune_run", "decode_runs", "ranking", "winner", "export", "plots"}``.

    Example:
        >>> run_pipeline(load_pipeline("experiments/pipeline.yaml", smoke_test=True))  # doctest: +SKIP
    """
    from search.export import check_prefer
    from search.tune import run

    prefer = check_prefer(prefer or p.prefer)
    if p.export is not None and p.export.exists() and any(p.export.iterdir()) and not force:
        raise UserError(f"{p.export}: exists and is not empty; pass --force to replace it (kept as .bak)")
    root = Where.claim(storage or p.storage, p.name)
    target = p.export or root.local / "model"  # a fresh pipeline directory each run: nothing to overwrite
    out(f"pipeline directory: {root.root}")
    ft_dir, ft_ranking, top = _finetune(p, root, address, out)
    models = _candidates(ft_dir, ft_ranking, top, root, out)
    out(f"[3/4] decoding sweep on each: {p.decode}")
    decode_runs = {
        trial_id: run(decode_spec(p, model), address=address, storage=str(root.root), name=f"decode-{trial_id}")[1]
        for trial_id, model in models.items()
    }
    out("[4/4] rank everything, export the winner")
    cost = DEFAULT_COST if prefer == "fastest-tied" else None  # the table then shows the front and the cost
    ranking = combine({t: rank(d, bootstrap=0, pareto=cost) for t, d in decode_runs.items()}, key="checkpoint")
    atomic_write(root.local / "ranking.md", format_ranking(ranking, "md") + "\n")
    root.share(root.local / "ranking.md")
    for line in _export_winner(ft_dir, ft_ranking, top, ranking, decode_runs, target, force, prefer):
        out(line)
    exported = root.share(target) if p.export is None else str(target)  # on remote storage: its URI
    plots = [path for d in (ft_dir, *decode_runs.values()) for path in _plots(d)]
    out(format_ranking(ranking, "table"))
    out(f"plots: {', '.join(str(p_) for p_ in plots)}")
    out(f"exported model (weights, tokenizer, generation_config.json, best_hparams.yaml, README.md): {exported}")
    return {
        "dir": root.root, "finetune_run": ft_dir, "decode_runs": decode_runs, "ranking": ranking, "winner": ranking.best,
        "export": target, "plots": plots,
    }  # fmt: skip


def _plots(run_dir: Any) -> list[Path]:
    try:
        return plot(run_dir)
    except UserError:  # nothing to plot in this run (e.g. one report per trial and no beam grid)
        return []


__all__ = ["Pipeline", "decode_spec", "finetune_spec", "is_pipeline", "load_pipeline", "run_pipeline"]
