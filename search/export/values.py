"""The values a winner ran with, as the export writes them: by dotted name, nested as a trainable's config,
YAML-safe, and paths relative to the project (an exported card never names the machine that ran the sweep).

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


PROJECT_MARKERS = ("pyproject.toml", ".git")  # a directory holding one of these is a project's root


def project_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that holds a :data:`PROJECT_MARKERS` entry, or None."""
    for directory in (start, *start.parents):
        if any((directory / marker).exists() for marker in PROJECT_MARKERS):
            return directory
    return None


def portable_path(path: str | Path, spec_file: str | Path) -> str:
    """``path`` (absolute, or relative to the spec file's directory) as an exported file names it: relative to the
    project that holds the spec file, else to the spec file's directory; a path outside both by its name alone.

    Example:
        >>> portable_path("/home/me/proj/data/dev.tsv", "/elsewhere/sweep.yaml")
        'dev.tsv'
        >>> portable_path("dev.tsv", "/elsewhere/sweep.yaml")
        'dev.tsv'
    """
    spec_dir = Path(spec_file).resolve().parent
    resolved = (spec_dir / Path(path).expanduser()).resolve()
    for base in (project_root(spec_dir), spec_dir):
        if base is not None and resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return str(path) if not Path(path).is_absolute() else resolved.name


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


__all__ = ["generate_args", "nested", "portable_path", "project_root", "winner_config", "yaml_safe"]
