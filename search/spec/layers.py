"""The layers of one spec, later wins: the ``space:`` file, the file itself, its ``smoke_test:`` section (with
``--smoke-test``), ``--set KEY.PATH=VALUE`` overrides, and a ``--search`` grid. Only YAML syntax is checked here.

Every layer is read by :class:`SpecLoader`: PyYAML's safe loader (YAML 1.1) that also reads YAML 1.2's floats, so
that ``1e-5`` (no dot, a string to YAML 1.1) is a number wherever it is written, as W&B reads it: the ``wandb``
CLI loads a sweep file with PyYAML and sends it re-dumped, ``1e-5`` unquoted, to the W&B server, which reads a
number. A quoted ``'1e-5'`` stays a string. YAML 1.1's booleans stay (``yes``/``no`` are True/False:
``search.checks`` keeps a flag from passing as a number).

Example:
    >>> parse_search_grid("num_beams=5:8 early_stopping=true:false", "sweep.yaml")
    {'num_beams': {'values': [5, 8]}, 'early_stopping': {'values': [True, False]}}
    >>> load_yaml_text("lr: {values: [1e-5, 3E-5, '1e-5'], min: -.5}")
    {'lr': {'values': [1e-05, 3e-05, '1e-5'], 'min': -0.5}}
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from search.errors import SpecError

# The keys a `space:` file may hold: the search space of W&B's format, and the W&B keys kept beside it.
SPACE_KEYS = ("method", "metric", "parameters", "early_terminate")
# W&B's schema keys that say how W&B runs a sweep (its agent's script and command line, its project, its Launch
# job or image, its controller): kept as given in Spec.extra, never used to run.
WANDB_ONLY_KEYS = (
    "program", "command", "project", "entity", "description", "apiVersion", "kind", "controller", "job", "image_uri",
)  # fmt: skip


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus YAML 1.2's floats: ``1e-5``, ``3E+2``, ``1.0e5``, ``-.5`` (strings to YAML 1.1)."""


# YAML 1.2's core-schema float, with a dot or an exponent (plain integers stay YAML 1.1's ints).
YAML12_FLOAT = re.compile(r"^(?=.*[.eE])[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+.0123456789"))


def load_yaml_text(text: str) -> Any:
    """YAML text as :class:`SpecLoader` reads it (what every layer of a spec goes through)."""
    return yaml.load(text, Loader=SpecLoader)  # a SafeLoader: builds only plain data


def deep_merge(base: dict, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base``; mappings merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path, file_label: str | None = None) -> dict:
    """Read one YAML mapping, turning I/O and syntax problems into one-line SpecErrors."""
    label = file_label or str(path)
    p = Path(path)
    if not p.is_file():
        raise SpecError(label, "", "file not found; check the path")
    try:
        data = load_yaml_text(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(label, "", f"invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError as e:
        raise SpecError(label, "", f"not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    if data is None:
        raise SpecError(label, "", "empty file; a sweep needs at least `parameters`")
    if not isinstance(data, dict):
        raise SpecError(label, "", f"must be a mapping of keys, got {type(data).__name__}")
    return data


def merge_layer(base: dict, over: Mapping, top_level_only: bool = False) -> dict:
    """One spec layer over another: sections merge key by key (or are replaced, with ``top_level_only``), and a
    parameter given in the upper layer replaces the lower one's whole (never a mix of ``value`` and ``values``)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k == "parameters" and isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = {**out[k], **copy.deepcopy(dict(v))}
        elif top_level_only or not (isinstance(v, Mapping) and isinstance(out.get(k), Mapping)):
            out[k] = copy.deepcopy(v)
        else:
            out[k] = deep_merge(dict(out[k]), v)
    return out


def parse_set(item: str, file: str) -> tuple[list[str], Any]:
    """``KEY.PATH=VALUE`` -> (path, value); the value is read as YAML (``3``, ``1e-3``, ``true``, ``[1, 2]``)."""
    if "=" not in item:
        raise SpecError(file, "--set", f"expected KEY.PATH=VALUE, got {item!r}")
    key, _, text = item.partition("=")
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise SpecError(file, "--set", f"empty key segment in {key!r}; write e.g. settings.max_steps=100")
    try:
        value = load_yaml_text(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return path, value


def apply_set(raw: dict, item: str, file: str) -> dict:
    path, value = parse_set(item, file)
    out = copy.deepcopy(raw)
    node = out
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise SpecError(file, ".".join(path[: i + 1]), f"--set {item}: is not a mapping, got {nxt!r}")
        node = nxt
    node[path[-1]] = value
    return out


def parse_search_grid(text: str, file: str) -> dict:
    """``run_eval_search.py`` syntax -> W&B ``parameters`` of ``values``.

    ``"num_beams=5:8 length_penalty=0.6:0.7 early_stopping=true:false"`` ->
    ``{"num_beams": {"values": [5, 8]}, "length_penalty": {"values": [0.6, 0.7]}, "early_stopping": {...}}``
    """
    params: dict[str, dict] = {}
    for term in text.split():
        name, eq, values = term.partition("=")
        if not eq or not name or not values:
            raise SpecError(file, "--search", f"expected NAME=V1:V2:..., got {term!r}")
        if name in params:
            raise SpecError(file, "--search", f"{name} given twice")
        parsed = []
        for v in values.split(":"):
            low = v.lower()
            parsed.append(True if low == "true" else False if low == "false" else load_yaml_text(v))
        params[name] = {"values": parsed}
    if not params:
        raise SpecError(file, "--search", 'empty; write e.g. --search "num_beams=5:8 length_penalty=0.6:1.0"')
    return params


def load_raw(
    file: str | Path, *, smoke_test: bool = False, overrides: list[str] = (), search: str | None = None
) -> dict:
    """The merged YAML mapping of a spec file and its layers (unvalidated beyond syntax)."""
    file = str(file)
    raw = read_yaml(file)
    space = raw.get("space")
    if space is not None:
        if not isinstance(space, str):
            raise SpecError(file, "space", f"must be a path to a YAML file, got {space!r}")
        space_path = Path(file).resolve().parent / space
        if not space_path.is_file():
            raise SpecError(file, "space", f"file not found: {space_path}; the path is relative to {file}")
        base = read_yaml(space_path, file_label=space)
        unknown = sorted(set(base) - set(SPACE_KEYS) - set(WANDB_ONLY_KEYS) - {"name"})
        if unknown:
            raise SpecError(
                space, unknown[0], f"a space file holds only {', '.join(SPACE_KEYS)}; move it to the sweep file"
            )
        raw = merge_layer({k: v for k, v in base.items() if k in SPACE_KEYS}, raw, top_level_only=True)
    if smoke_test:
        smoke = raw.get("smoke_test") or {}
        if not isinstance(smoke, Mapping):
            raise SpecError(file, "smoke_test", f"must be a mapping merged over the file, got {smoke!r}")
        raw = merge_layer(raw, smoke)
    for item in overrides:
        raw = apply_set(raw, item, file)
    if search:
        raw["parameters"] = parse_search_grid(search, file)
        raw["method"] = "grid"
        raw.pop("run_cap", None)
    return raw


__all__ = [
    "SPACE_KEYS",
    "WANDB_ONLY_KEYS",
    "SpecLoader",
    "apply_set",
    "deep_merge",
    "load_raw",
    "load_yaml_text",
    "merge_layer",
    "parse_search_grid",
    "read_yaml",
]
