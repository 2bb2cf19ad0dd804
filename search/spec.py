"""Sweep YAML -> a validated, frozen :class:`Spec`.

The format is the W&B sweep format (``method``, ``metric``, ``parameters``, ``early_terminate``, ``run_cap`` and the W&B-only
keys ``program``, ``command``, ``project``, ``entity``, ``name``, ``description``), with our keys beside it: ``trainable``,
``scheduler``, ``resources``, ``max_concurrent``, ``seed``, ``storage``, ``space``, ``checkpoint``, ``wandb``, ``smoke_test``
and the free sections ``model``, ``data``, ``settings`` that the trainable receives unsearched.

Layers of one spec, later wins: the ``space:`` file, the file itself, its ``smoke_test:`` section (with ``--smoke-test``),
``--set KEY.PATH=VALUE`` overrides, and a ``--search`` grid. Every problem is a :class:`SpecError` of one line.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search.errors import SpecError
from search.params import Param, deep_merge, parse_parameters

METHODS = ("grid", "random", "bayes")
GOALS = {"maximize": "max", "minimize": "min"}
WANDB_ONLY_KEYS = ("program", "command", "project", "entity", "description")
TOP_KEYS = (
    ("method", "metric", "parameters", "early_terminate", "run_cap", "name")
    + WANDB_ONLY_KEYS
    + ("trainable", "scheduler", "resources", "max_concurrent", "seed", "storage", "space", "checkpoint", "wandb")
    + ("model", "data", "settings", "smoke_test", "columns")
)
SPACE_KEYS = ("method", "metric", "parameters", "early_terminate")


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str  # maximize | minimize

    @property
    def mode(self) -> str:
        """Ray's spelling of the goal: ``max`` or ``min``."""
        return GOALS[self.goal]


@dataclass(frozen=True)
class Scheduler:
    type: str  # fifo | asha | pbt | ... (see algorithms.SCHEDULERS)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Checkpointing:
    keep: int | None = (
        None  # checkpoints kept per trial, best by the metric; None: 2, or 4 under PBT (donors' must last)
    )


@dataclass(frozen=True)
class Spec:
    """A validated sweep. ``raw`` is the merged YAML mapping it came from (saved beside every run)."""

    file: str
    name: str
    method: str
    metric: Metric
    parameters: tuple[Param, ...]
    scheduler: Scheduler
    run_cap: int | None
    trainable: str | None
    resources: Resources
    max_concurrent: int | None
    seed: int | None
    storage: str
    checkpoint: Checkpointing
    wandb: Mapping[str, Any]
    model: Any
    data: Mapping[str, Any]
    settings: Mapping[str, Any]
    columns: tuple[str, ...]  # more reported metrics shown in the ranked table, after the metric
    extra: Mapping[str, Any]  # W&B-only keys, kept as given
    raw: Mapping[str, Any]

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the spec are resolved against (the spec file's)."""
        return Path(self.file).resolve().parent


# ----------------------------------------------------------------------------------------------------------------------
# Loading and layering


def read_yaml(path: str | Path, file_label: str | None = None) -> dict:
    """Read one YAML mapping, turning I/O and syntax problems into one-line SpecErrors."""
    label = file_label or str(path)
    p = Path(path)
    if not p.is_file():
        raise SpecError(label, "", "file not found; check the path")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
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
        value = yaml.safe_load(text) if text.strip() else ""
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
            parsed.append(True if low == "true" else False if low == "false" else yaml.safe_load(v))
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


# ----------------------------------------------------------------------------------------------------------------------
# Validation


def _mapping(raw: dict, key: str, file: str, default: Any = None) -> Mapping:
    v = raw.get(key, default)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise SpecError(file, key, f"must be a mapping, got {v!r}")
    return v


def _check_keys(m: Mapping, allowed: tuple[str, ...], file: str, prefix: str) -> None:
    for k in m:
        if k not in allowed:
            raise SpecError(file, f"{prefix}{k}", f"unknown key; valid keys: {', '.join(allowed)}")


def _int(v: Any, file: str, key: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(file, key, f"must be an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise SpecError(file, key, f"must be >= {minimum}, got {v!r}")
    return v


def _number(v: Any, file: str, key: str, minimum: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise SpecError(file, key, f"must be a number, got {v!r}")
    if minimum is not None and v < minimum:
        raise SpecError(file, key, f"must be >= {minimum}, got {v!r}")
    return float(v)


def _metric(raw: dict, file: str) -> Metric:
    m = raw.get("metric")
    if m is None:
        raise SpecError(file, "metric", "missing; write e.g. metric: {name: bleu, goal: maximize}")
    if not isinstance(m, Mapping):
        raise SpecError(file, "metric", f"must be a mapping {{name, goal}}, got {m!r}")
    _check_keys(m, ("name", "goal", "target"), file, "metric.")
    name = m.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(file, "metric.name", f"must be the name of a reported metric, got {name!r}")
    goal = m.get("goal", "minimize")
    if goal not in GOALS:
        raise SpecError(file, "metric.goal", f"must be one of maximize, minimize, got {goal!r}")
    return Metric(name, goal)


def _scheduler(raw: dict, file: str) -> Scheduler:
    from search.algorithms import scheduler_from_early_terminate, validate_scheduler

    sched = raw.get("scheduler")
    et = raw.get("early_terminate")
    if sched is not None and et is not None:
        raise SpecError(file, "early_terminate", "given together with scheduler; keep one of them")
    if et is not None:
        return scheduler_from_early_terminate(et, file)
    if sched is None:
        return Scheduler("fifo", {})
    if isinstance(sched, str):
        sched = {"type": sched}
    if not isinstance(sched, Mapping):
        raise SpecError(file, "scheduler", f"must be a mapping {{type: fifo|asha|pbt, ...}}, got {sched!r}")
    options = {k: v for k, v in sched.items() if k != "type"}
    result = Scheduler(str(sched.get("type", "fifo")), options)
    validate_scheduler(result, file)
    return result


def validate(raw: dict, file: str) -> Spec:
    """Check every key of a merged spec mapping and build the frozen :class:`Spec`."""
    _check_keys(raw, TOP_KEYS, file, "")
    method = raw.get("method", "random")
    if method not in METHODS:
        raise SpecError(file, "method", f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    metric = _metric(raw, file)
    params_raw = raw.get("parameters")
    if not isinstance(params_raw, Mapping) or not params_raw:
        raise SpecError(file, "parameters", f"must be a non-empty mapping of parameters, got {params_raw!r}")
    parameters = parse_parameters(params_raw, file, method)
    scheduler = _scheduler(raw, file)

    run_cap = raw.get("run_cap")
    if run_cap is not None:
        run_cap = _int(run_cap, file, "run_cap", 1)
        if method == "grid":
            raise SpecError(file, "run_cap", "method grid runs every combination once; remove run_cap or use random")

    trainable = raw.get("trainable")
    if trainable is not None and (not isinstance(trainable, str) or not trainable):
        raise SpecError(file, "trainable", f"must be a registered name or module:function, got {trainable!r}")

    res = _mapping(raw, "resources", file)
    _check_keys(res, ("cpu", "gpu"), file, "resources.")
    resources = Resources(
        cpu=_number(res.get("cpu", 1), file, "resources.cpu", 0.0),
        gpu=_number(res.get("gpu", 0), file, "resources.gpu", 0.0),
    )
    if resources.cpu == 0 and resources.gpu == 0:
        raise SpecError(file, "resources", "a trial needs some cpu or gpu, got cpu=0 gpu=0")

    max_concurrent = raw.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = _int(max_concurrent, file, "max_concurrent", 1)
    seed = raw.get("seed")
    if seed is not None:
        seed = _int(seed, file, "seed", 0)
    storage = raw.get("storage", "./runs")
    if not isinstance(storage, str) or not storage:
        raise SpecError(file, "storage", f"must be a directory path, got {storage!r}")
    name = raw.get("name", Path(file).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(file, "name", f"must be a plain name without '/', got {name!r}")

    ck = _mapping(raw, "checkpoint", file)
    _check_keys(ck, ("keep",), file, "checkpoint.")
    checkpoint = Checkpointing(keep=None if ck.get("keep") is None else _int(ck["keep"], file, "checkpoint.keep", 1))

    wandb = _mapping(raw, "wandb", file)
    _check_keys(wandb, ("mode", "project", "entity", "group", "tags"), file, "wandb.")
    if wandb.get("mode", "offline") not in ("online", "offline", "disabled"):
        raise SpecError(file, "wandb.mode", f"must be online, offline or disabled, got {wandb.get('mode')!r}")

    for section in ("data", "settings"):
        _mapping(raw, section, file)
    model = raw.get("model")
    if model is not None and not isinstance(model, str | Mapping):
        raise SpecError(file, "model", f"must be a local model directory or a mapping {{arch: ...}}, got {model!r}")

    columns = raw.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
        raise SpecError(file, "columns", f"must be a list of reported metric names, got {columns!r}")

    spec = Spec(
        file=file,
        name=name,
        method=method,
        metric=metric,
        parameters=parameters,
        scheduler=scheduler,
        run_cap=run_cap,
        trainable=trainable,
        resources=resources,
        max_concurrent=max_concurrent,
        seed=seed,
        storage=storage,
        checkpoint=checkpoint,
        wandb=dict(wandb),
        model=model,
        data=dict(_mapping(raw, "data", file)),
        settings=dict(_mapping(raw, "settings", file)),
        columns=tuple(columns),
        extra={k: raw[k] for k in WANDB_ONLY_KEYS if k in raw},
        raw=raw,
    )
    from search.algorithms import check_compatible

    check_compatible(spec)
    return spec


def load_spec(
    file: str | Path, *, smoke_test: bool = False, overrides: list[str] = (), search: str | None = None
) -> Spec:
    """Load, layer and validate a sweep file.

    Example:
        >>> spec = load_spec("spaces/beam_seed_grid.yaml")  # doctest: +SKIP
        >>> spec.metric.mode
        'max'
    """
    file = str(file)
    raw = load_raw(file, smoke_test=smoke_test, overrides=list(overrides), search=search)
    return validate(raw, file)
