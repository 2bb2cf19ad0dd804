"""The values a winner ran with, as the export writes them: by dotted name, nested as a trainable's config, and
YAML-safe.

Example:
    >>> nested({"opt.lr": 1, "seed": 0})
    {'opt': {'lr': 1}, 'seed': 0}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search.report import Row, trial_params
from search.spec import Spec
from search.trainables.outputs import GENERATE_ARGS_FILE


def winner_config(row: Row, spec: Spec) -> dict[str, Any]:
    """Every parameter (searched and constant) the trial ran with, by dotted name."""
    params_file = Path(row.path or "") / "params.json"
    if not params_file.is_file():
        return dict(row.params)
    return trial_params(json.loads(params_file.read_text(encoding="utf-8")), spec, constants=True)


def generate_args(row: Row, spec: Spec) -> dict[str, Any]:
    """The ``generate()`` arguments a decoding trial was scored with, as it recorded them (``generate_args.json``:
    the ``decode`` trainable's searched and shared arguments); else the parameters it ran with."""
    recorded = Path(row.path or "") / GENERATE_ARGS_FILE
    if recorded.is_file():
        return json.loads(recorded.read_text(encoding="utf-8"))
    return winner_config(row, spec)


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


def yaml_safe(value: Any) -> Any:
    """Numpy scalars and tuples as YAML-safe Python values."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, dict):
        return {k: yaml_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [yaml_safe(v) for v in value]
    return value


__all__ = ["generate_args", "nested", "winner_config", "yaml_safe"]
