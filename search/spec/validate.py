"""A merged sweep mapping -> a validated, frozen :class:`Spec`: every key checked, every problem one line.

The format is the W&B sweep format (``method``, ``metric``, ``parameters``, ``early_terminate``, ``run_cap`` and the
W&B-only keys ``program``, ``command``, ``project``, ``entity``, ``name``, ``description``), with our keys beside it:
``trainable``, ``scheduler``, ``resources``, ``max_concurrent``, ``seed``, ``storage``, ``space``, ``checkpoint``,
``wandb``, ``smoke_test``, ``columns`` and the sections ``model``, ``data``, ``settings`` that the trainable receives
unsearched.

Only what the YAML itself says is checked here: no Ray, torch or user code is imported, so that a saved spec reads
back anywhere. The rules that need Ray or the trainable (a scheduler's arguments, PBT's needs) are
:func:`search.tune.check_spec`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from search.checks import is_int, is_number, require_int, require_number, require_storage
from search.errors import SpecError
from search.spec.layers import WANDB_ONLY_KEYS, load_raw
from search.spec.model import (
    DEFAULT_MAX_FAILURES,
    GOALS,
    METHODS,
    SECTIONS,
    Checkpointing,
    Metric,
    Resources,
    Scheduler,
    Spec,
)
from search.spec.params import parse_parameters
from search.storage import OPTION_KEYS

TOP_KEYS = (
    ("method", "metric", "parameters", "early_terminate", "run_cap", "name")
    + WANDB_ONLY_KEYS
    + ("trainable", "scheduler", "resources", "max_concurrent", "seed", "storage", "space", "checkpoint", "wandb")
    + ("storage_options", "max_failures")
    + SECTIONS
    + ("smoke_test", "columns")
)
WANDB_KEYS = ("mode", "project", "entity", "group", "tags")


def _mapping(raw: Mapping, key: str, file: str) -> Mapping:
    v = raw.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise SpecError(file, key, f"must be a mapping, got {v!r}")
    return v


def _check_keys(m: Mapping, allowed: tuple[str, ...], file: str, prefix: str) -> None:
    for k in m:
        if k not in allowed:
            raise SpecError(file, f"{prefix}{k}", f"unknown key; valid keys: {', '.join(allowed)}")


def _metric(raw: Mapping, file: str) -> Metric:
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
    if not isinstance(goal, str) or goal not in GOALS:
        raise SpecError(file, "metric.goal", f"must be one of maximize, minimize, got {goal!r}")
    return Metric(name, goal)


def _early_terminate_keys(et: Any, file: str) -> Mapping:
    if not isinstance(et, Mapping):
        raise SpecError(file, "early_terminate", f"must be a mapping {{type: hyperband, min_iter: N}}, got {et!r}")
    _check_keys(et, ("type", "min_iter", "max_iter", "eta", "s", "strict"), file, "early_terminate.")
    if et.get("type") != "hyperband":
        raise SpecError(file, "early_terminate.type", f"only hyperband is supported, got {et.get('type')!r}")
    for k in ("min_iter", "max_iter", "s"):
        v = et.get(k)
        if v is not None and (not is_int(v) or v < (0 if k == "s" else 1)):
            raise SpecError(file, f"early_terminate.{k}", f"must be a positive integer, got {v!r}")
    eta = et.get("eta", 3)
    if not is_number(eta) or eta <= 1:
        raise SpecError(file, "early_terminate.eta", f"must be a number > 1, got {eta!r}")
    if et.get("min_iter") is None and et.get("max_iter") is None:
        raise SpecError(file, "early_terminate", "needs min_iter or max_iter (with s)")
    return et


def scheduler_from_early_terminate(et: Any, file: str) -> Scheduler:
    """W&B ``early_terminate: {type: hyperband, min_iter | max_iter, eta, s}`` -> Ray's ASHA.

    W&B's hyperband brackets sit at ``min_iter * eta**k``, or at ``max_iter / eta**k`` for ``k <= s``: the same
    rungs as ASHA with ``grace_period = min_iter`` (or ``max_iter / eta**s``) and ``reduction_factor = eta``.
    """
    et = _early_terminate_keys(et, file)
    eta = et.get("eta", 3)
    min_iter, max_iter, s = et.get("min_iter"), et.get("max_iter"), et.get("s")
    options: dict[str, Any] = {"reduction_factor": eta}
    if min_iter is not None:
        options["grace_period"] = min_iter
    if max_iter is not None:
        options["max_t"] = max_iter
        if min_iter is None:
            if s is None:
                raise SpecError(file, "early_terminate.s", "needed with max_iter (number of brackets below max_iter)")
            options["grace_period"] = max(1, int(max_iter / eta**s))
    if options.get("max_t") is not None and options["grace_period"] > options["max_t"]:
        raise SpecError(file, "early_terminate.min_iter", f"must be <= max_iter, got {min_iter} > {max_iter}")
    return Scheduler("asha", options)


def _scheduler(raw: Mapping, file: str) -> Scheduler:
    sched, et = raw.get("scheduler"), raw.get("early_terminate")
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
    return Scheduler(str(sched.get("type", "fifo")), {k: v for k, v in sched.items() if k != "type"})


def _search(raw: Mapping, file: str) -> dict[str, Any]:
    """``method``, ``parameters`` and ``run_cap``: what is searched and how often."""
    method = raw.get("method", "random")
    if method not in METHODS:
        raise SpecError(file, "method", f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    params_raw = raw.get("parameters")
    if not isinstance(params_raw, Mapping) or not params_raw:
        raise SpecError(file, "parameters", f"must be a non-empty mapping of parameters, got {params_raw!r}")
    run_cap = raw.get("run_cap")
    if run_cap is not None:
        run_cap = require_int(run_cap, file, "run_cap", 1)
        if method == "grid":
            raise SpecError(file, "run_cap", "method grid runs every combination once; remove run_cap or use random")
    return {"method": method, "parameters": parse_parameters(params_raw, file, method), "run_cap": run_cap}


def _running(raw: Mapping, file: str) -> dict[str, Any]:
    """``trainable``, ``resources``, ``max_concurrent``, ``seed``, ``storage`` (a path or a URI) and
    ``storage_options``, ``name``, ``checkpoint``, ``max_failures``."""
    trainable = raw.get("trainable")
    if trainable is not None and (not isinstance(trainable, str) or not trainable):
        raise SpecError(file, "trainable", f"must be a registered name or module:function, got {trainable!r}")
    res = _mapping(raw, "resources", file)
    _check_keys(res, ("cpu", "gpu"), file, "resources.")
    resources = Resources(
        cpu=require_number(res.get("cpu", 1), file, "resources.cpu", 0.0),
        gpu=require_number(res.get("gpu", 0), file, "resources.gpu", 0.0),
    )
    if resources.cpu == 0 and resources.gpu == 0:
        raise SpecError(file, "resources", "a trial needs some cpu or gpu, got cpu=0 gpu=0")
    optional_int = {k: raw.get(k) for k in ("max_concurrent", "seed")}
    for key, low in (("max_concurrent", 1), ("seed", 0)):
        if optional_int[key] is not None:
            require_int(optional_int[key], file, key, low)
    storage = require_storage(raw.get("storage", "./runs"), file, "storage")
    options = _mapping(raw, "storage_options", file)
    _check_keys(options, OPTION_KEYS, file, "storage_options.")
    max_failures = require_int(raw.get("max_failures", DEFAULT_MAX_FAILURES), file, "max_failures", -1)
    name = raw.get("name", Path(file).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(file, "name", f"must be a plain name without '/', got {name!r}")
    ck = _mapping(raw, "checkpoint", file)
    _check_keys(ck, ("keep",), file, "checkpoint.")
    keep = None if ck.get("keep") is None else require_int(ck["keep"], file, "checkpoint.keep", 1)
    return {
        "trainable": trainable, "resources": resources, **optional_int, "storage": storage, "name": name,
        "checkpoint": Checkpointing(keep=keep), "storage_options": dict(options), "max_failures": max_failures,
    }  # fmt: skip


def _sections(raw: Mapping, file: str) -> dict[str, Any]:
    """``wandb``, ``columns`` and the unsearched sections ``model``, ``data``, ``settings``."""
    wandb = _mapping(raw, "wandb", file)
    _check_keys(wandb, WANDB_KEYS, file, "wandb.")
    if wandb.get("mode", "offline") not in ("online", "offline", "disabled"):
        raise SpecError(file, "wandb.mode", f"must be online, offline or disabled, got {wandb.get('mode')!r}")
    model = raw.get("model")
    if model is not None and not isinstance(model, str | Mapping):
        raise SpecError(file, "model", f"must be a local model directory or a mapping {{arch: ...}}, got {model!r}")
    columns = raw.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
        raise SpecError(file, "columns", f"must be a list of reported metric names, got {columns!r}")
    return {
        "wandb": dict(wandb), "model": model, "data": dict(_mapping(raw, "data", file)),
        "settings": dict(_mapping(raw, "settings", file)), "columns": tuple(columns),
    }  # fmt: skip


def validate(raw: dict, file: str) -> Spec:
    """Check every key of a merged spec mapping and build the frozen :class:`Spec` (YAML rules only)."""
    _check_keys(raw, TOP_KEYS, file, "")
    search = _search(raw, file)
    for p in search["parameters"]:
        if p.path[0] in SECTIONS:
            raise SpecError(file, f"parameters.{p.name}", f"{p.path[0]!r} is a section name; rename the parameter")
    return Spec(
        file=file,
        metric=_metric(raw, file),
        scheduler=_scheduler(raw, file),
        **search,
        **_running(raw, file),
        **_sections(raw, file),
        extra={k: raw[k] for k in WANDB_ONLY_KEYS if k in raw},
        raw=raw,
    )


def load_spec(
    file: str | Path, *, smoke_test: bool = False, overrides: list[str] = (), search: str | None = None
) -> Spec:
    """Load, layer and validate a sweep file (the YAML rules; ``search.tune.check_spec`` adds Ray's).

    Example:
        >>> spec = load_spec("spaces/beam_seed_grid.yaml")  # doctest: +SKIP
        >>> spec.metric.mode  # doctest: +SKIP
        'max'
    """
    file = str(file)
    raw = load_raw(file, smoke_test=smoke_test, overrides=list(overrides), search=search)
    return validate(raw, file)


__all__ = ["TOP_KEYS", "load_spec", "scheduler_from_early_terminate", "validate"]
