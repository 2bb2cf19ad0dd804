"""A decoding sweep's winner as a model's defaults: ``generate()`` arguments merged into ``generation_config.json``
with ``transformers.GenerationConfig`` (every other field kept), so that a bare ``model.generate()`` uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search.errors import UserError
from search.files import atomic_write

GENERATION_FILE = "generation_config.json"


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
    model_dir: str | Path, params: dict[str, Any], *, dry_run: bool = False, backup: bool = True
) -> tuple[list[str], Path | None]:
    """Merge ``generate()`` arguments into ``model_dir/generation_config.json``; keep every other field.

    Args:
        model_dir: a model directory (``config.json``; ``generation_config.json`` is created if missing).
        params: ``generate()`` keyword arguments, e.g. ``{"num_beams": 5, "length_penalty": 1.1}``.
        dry_run: only return the changes.
        backup: keep the previous file as ``.bak`` (not needed in a directory being written).

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
    return changes, atomic_write(model_dir / GENERATION_FILE, new.to_json_string(use_diff=True), backup=backup)


__all__ = ["GENERATION_FILE", "export_generation", "generation_diff"]
