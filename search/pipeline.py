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

This module only orchestrates: ``runner.run`` runs the sweeps, ``checkpoints.export_model_dir`` turns checkpoints into
model directories, ``results`` ranks, ``export`` writes the winner, ``plots`` draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.errors import SpecError, UserError
from search.spec import deep_merge, load_spec, read_yaml

KEYS = ("name", "finetune", "decode", "top_k", "export", "storage", "finetune_set", "decode_set", "smoke_test")


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
    storage: Path
    finetune_set: tuple[str, ...]
    decode_set: tuple[str, ...]
    smoke_test: bool


def _path(raw: dict, key: str, file: str, base: Path, must_exist: bool) -> Path:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(file, key, f"must be a path relative to the file, got {value!r}")
    path = (base / value).resolve()
    if must_exist and not path.is_file():
        raise SpecError(file, key, f"file not found: {path}; the path is relative to {file}")
    return path


def _sets(raw: dict, key: str, file: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise SpecError(file, key, f"must be a list of KEY.PATH=VALUE strings, got {value!r}")
    return tuple(value)


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
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise SpecError(file, "top_k", f"must be an integer >= 1, got {top_k!r}")
    pipeline = Pipeline(
        file=file,
        name=str(raw.get("name") or Path(file).stem),
        finetune=_path(raw, "finetune", file, base, True),
        decode=_path(raw, "decode", file, base, True),
        top_k=top_k,
        export=_path(raw, "export", file, base, False) if raw.get("export") is not None else None,
        storage=(base / str(raw.get("storage", "runs"))).resolve(),
        finetune_set=_sets(raw, "finetune_set", file),
        decode_set=_sets(raw, "decode_set", file),
        smoke_test=smoke_test,
    )
    finetune = _finetune_spec(pipeline)
    if finetune.trainable != "finetune":
        raise SpecError(file, "finetune", f"must be a sweep of the finetune trainable, got {finetune.trainable!r}")
    decode = _decode_spec(pipeline, "MODEL_DIR")
    if decode.trainable != "decode":
        raise SpecError(file, "decode", f"must be a sweep of the decode trainable, got {decode.trainable!r}")
    return pipeline


def _finetune_spec(p: Pipeline):
    return load_spec(p.finetune, smoke_test=p.smoke_test, overrides=list(p.finetune_set))


def _decode_spec(p: Pipeline, model_dir: str):
    return load_spec(p.decode, smoke_test=p.smoke_test, overrides=[*p.decode_set, f"model={model_dir}"])


def run_pipeline(
    p: Pipeline, *, address: str | None = None, storage: str | None = None, force: bool = False, out: Any = print
) -> dict[str, Any]:
    """Run the whole pipeline and print the final table and where the exported model is.

    Returns:
        ``{"dir", "finetune_run", "decode_runs", "ranking", "winner", "export", "plots"}``.

    Example:
        >>> run_pipeline(load_pipeline("experiments/pipeline.yaml", smoke_test=True))  # doctest: +SKIP
    """
    from search.checkpoints import export_model_dir
    from search.export import (
        CARD_FILE,
        atomic_write,
        best_checkpoint,
        card_section,
        card_with_section,
        export_generation,
        export_model,
        generate_args,
    )  # fmt: skip
    from search.plots import plot
    from search.results import combine, format_ranking, rank
    from search.runner import load_saved_spec, run, unique_run_dir

    if p.export is not None and p.export.exists() and any(p.export.iterdir()) and not force:
        raise UserError(f"{p.export}: exists and is not empty; pass --force to replace it (kept as .bak)")
    root = unique_run_dir(Path(storage).resolve() if storage else p.storage, p.name)
    target = p.export or root / "model"  # a fresh pipeline directory each run: nothing to overwrite
    out(f"pipeline directory: {root}")

    out(f"[1/4] fine-tune sweep: {p.finetune}")
    _, ft_dir = run(_finetune_spec(p), address=address, storage=str(root), name="finetune")
    ft_ranking = rank(ft_dir)
    out(format_ranking(ft_ranking, "table"))
    top = ft_ranking.ranked[: p.top_k]
    if not top:
        raise UserError(f"{ft_dir}: no fine-tune trial finished with {ft_ranking.metric}; see the table above")

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out(f"[2/4] best checkpoints of the top {len(top)} trials -> model directories")
    models: dict[str, Path] = {}
    for row in top:
        checkpoint = best_checkpoint(ft_dir, row, ft_ranking.metric, ft_ranking.mode)
        models[row.trial_id] = export_model_dir(checkpoint, root / "candidates" / row.trial_id)
        out(f"  {row.trial_id} ({ft_ranking.metric}={row.value:.4g}): {models[row.trial_id]}")

    out(f"[3/4] decoding sweep on each: {p.decode}")
    decode_runs: dict[str, Path] = {}
    for trial_id, model_dir in models.items():
        _, decode_runs[trial_id] = run(
            _decode_spec(p, str(model_dir)), address=address, storage=str(root), name=f"decode-{trial_id}"
        )

    out("[4/4] rank everything, export the winner")
    ranking = combine({t: rank(d, bootstrap=0) for t, d in decode_runs.items()}, key="checkpoint")
    (root / "ranking.md").write_text(format_ranking(ranking, "md") + "\n", encoding="utf-8")
    winner = ranking.best
    if winner is None:
        raise UserError(f"{root}: no decoding trial finished with {ranking.metric}; see the decode runs")
    trial_id = winner.params["checkpoint"]
    ft_row = next(r for r in top if r.trial_id == trial_id)
    for line in export_model(ft_dir, ft_ranking, load_saved_spec(ft_dir), target, force=force, row=ft_row):
        out(line)
    decode_spec = load_saved_spec(decode_runs[trial_id])
    changes, _ = export_generation(target, generate_args(winner, decode_spec))
    out(f"{target / 'generation_config.json'}: " + ("; ".join(changes) or "unchanged"))
    card = target / CARD_FILE
    section = card_section(ranking, decode_spec, f"Decoding: {decode_spec.name} on the top {len(top)} checkpoints")
    backup = atomic_write(card, card_with_section(card.read_text(encoding="utf-8"), "decode", section))
    if backup is not None:
        backup.unlink()  # the card export_model wrote moments ago, now extended

    plots = [path for d in (ft_dir, *decode_runs.values()) for path in _plots(plot, d)]
    out(format_ranking(ranking, "table"))
    out(f"plots: {', '.join(str(p_) for p_ in plots)}")
    out(f"exported model (weights, tokenizer, generation_config.json, best_hparams.yaml, README.md): {target}")
    return {
        "dir": root, "finetune_run": ft_dir, "decode_runs": decode_runs, "ranking": ranking, "winner": winner,
        "export": target, "plots": plots,
    }  # fmt: skip


def _plots(plot, run_dir: Path) -> list[Path]:
    try:
        return plot(run_dir)
    except UserError:  # nothing to plot in this run (e.g. one report per trial and no beam grid)
        return []


__all__ = ["Pipeline", "load_pipeline", "run_pipeline"]
