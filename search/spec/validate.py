"""A merged sweep mapping -> a validated, frozen :class:`Spec`: every key checked, every problem one line.

The format is the W&B sweep format (``method``, ``metric``, ``parameters``, ``early_terminate``, ``run_cap``, ``name``
and the W&B-only keys of ``WANDB_ONLY_KEYS``: ``program``, ``command``, ``project``, ``entity``, ``description``,
``apiVersion``, ``kind``, ``controller``, ``job``, ``image_uri``, kept as given), with our keys beside it:
``trainable``, ``scheduler``, ``resources``, ``max_concurrent``, ``seed``, ``storage``, ``space``, ``checkpoint``,
``wandb``, ``smoke_test``, ``columns`` and the sections ``model``, ``data``, ``settings`` that the trainable receives
unsearched.

W&B's schema, key by key, and what it means here:

- ``metric`` is optional for ``grid`` and ``random``, as in W&B; a run then ranks by the trainable's primary metric
  (``search.tune.registry.complete_metric``). ``bayes``, ``early_terminate`` and a scheduler other than ``fifo``
  need it in the spec.
- ``metric.target``: the sweep stops once a trial reaches it (``>=`` when maximizing, ``<=`` when minimizing).
- ``metric.impute`` (``latest``, ``best``, ``worst``) and ``metric.impute_while_running`` (those or ``false``) tell
  W&B's Gaussian-process bayes search what to learn from failed and running runs. They are checked and kept, but do
  nothing here: ``bayes`` is hyperopt's TPE through Ray's ``HyperOptSearch``, which learns only from finished trials
  (an errored trial is left out, a trial an early stopper cut counts with its last report).
- ``early_terminate.strict``: W&B's default (``true``) compares a run's value at a rung with the rung's threshold,
  which is what ASHA does. ``false`` (W&B compares the run's best value so far) has no ASHA equivalent: it is
  accepted and ASHA's rule applies.
- W&B's own ``scheduler: {engine: ...}`` and ``method: custom`` (W&B Launch's scheduler jobs) and ``metrics`` (a
  multi-objective list) are refused in one line that says what to write instead: our ``scheduler:`` is Ray Tune's.
- An unknown key is an error, as in W&B, naming the key meant when one is close.
- A whole number written as a float (``run_cap: 1e3``) counts as an integer, as W&B's JSON schema counts it.

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
from search.spec.rules import check_keys as _check_keys
from search.spec.rules import did_you_mean, whole
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
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
IMPUTE = ("latest", "best", "worst")  # W&B's values of metric.impute (and, with "false", of impute_while_running)
# Keys of W&B's own `scheduler:` (schema.json's engine, source, optimizer, search_space; W&B Launch's job, resource,
# num_workers, settings, docker_image), told apart from ours, which has a `type`.
WANDB_SCHEDULER_KEYS = (
    "engine", "source", "optimizer", "search_space", "job", "resource", "num_workers", "settings", "docker_image",
)  # fmt: skip


def _mapping(raw: Mapping, key: str, file: str) -> Mapping:
    v = raw.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise SpecError(file, key, f"must be a mapping, got {v!r}")
    return v


def _int(value: Any, file: str, key: str, minimum: int) -> int:
    """An integer key (``1e3`` counts as 1000); see :func:`search.checks.require_int`."""
    return require_int(whole(value), file, key, minimum)


def _metric_needed_by(method: str, scheduler: Scheduler, raw: Mapping) -> str | None:
    """Why a spec must name its metric, or None: a grid or random search may leave it to the trainable."""
    if method == "bayes":
        return "method bayes learns from it"
    if raw.get("early_terminate") is not None:
        return "early_terminate stops trials by it"
    if scheduler.type != "fifo":
        return f"scheduler {scheduler.type} compares trials by it"
    return None


def _metric(raw: Mapping, file: str, needed_by: str | None) -> Metric | None:
    """``metric: {name, goal, target, impute, impute_while_running}``, or None when absent and not needed."""
    m = raw.get("metric")
    if m is None:
        if needed_by:
            raise SpecError(file, "metric", f"missing; {needed_by}; write e.g. metric: {{name: bleu, goal: maximize}}")
        return None
    if not isinstance(m, Mapping):
        raise SpecError(file, "metric", f"must be a mapping {{name, goal}}, got {m!r}")
    _check_keys(m, METRIC_KEYS, file, "metric.")
    name = m.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(file, "metric.name", f"must be the name of a reported metric, got {name!r}")
    goal = m.get("goal", "minimize")
    if not isinstance(goal, str) or goal not in GOALS:
        raise SpecError(file, "metric.goal", f"must be one of maximize, minimize, got {goal!r}")
    target = m.get("target")
    if target is not None:
        target = require_number(target, file, "metric.target")
    if m.get("impute", "worst") not in IMPUTE:
        raise SpecError(file, "metric.impute", f"must be one of {', '.join(IMPUTE)}, got {m['impute']!r}")
    while_running = m.get("impute_while_running", "false")
    if while_running is not False and while_running not in (*IMPUTE, "false"):
        raise SpecError(
            file, "metric.impute_while_running", f"must be one of {', '.join(IMPUTE)}, false, got {while_running!r}"
        )
    return Metric(name, goal, target)


def _early_terminate_keys(et: Any, file: str) -> Mapping:
    if not isinstance(et, Mapping):
        raise SpecError(file, "early_terminate", f"must be a mapping {{type: hyperband, min_iter: N}}, got {et!r}")
    _check_keys(et, ("type", "min_iter", "max_iter", "eta", "s", "strict"), file, "early_terminate.")
    if et.get("type") != "hyperband":
        raise SpecError(file, "early_terminate.type", f"only hyperband is supported, got {et.get('type')!r}")
    et = {**et, **{k: whole(et[k]) for k in ("min_iter", "max_iter", "s") if k in et}}
    for k in ("min_iter", "max_iter", "s"):
        v = et.get(k)
        if v is not None and (not is_int(v) or v < (0 if k == "s" else 1)):
            raise SpecError(file, f"early_terminate.{k}", f"must be a positive integer, got {v!r}")
    if not isinstance(et.get("strict", True), bool):
        raise SpecError(file, "early_terminate.strict", f"must be true or false, got {et['strict']!r}")
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
    ASHA compares a trial's value at the rung, as W&B's default ``strict: true`` does; ``strict: false`` (W&B
    compares the best value so far) is accepted and not mapped.
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
    if "type" not in sched and set(sched) & set(WANDB_SCHEDULER_KEYS):
        raise SpecError(
            file, "scheduler", "W&B's own scheduler (engine, or a W&B Launch scheduler job) does not apply here: "
            "scheduler: is Ray Tune's trial scheduler {type: fifo|asha|hyperband|median|pbt, ...} and method "
            "grid|random|bayes picks the search (bayes: hyperopt's TPE); remove it, or write e.g. scheduler: {type: asha}"
        )  # fmt: skip
    return Scheduler(str(sched.get("type", "fifo")), {k: v for k, v in sched.items() if k != "type"})


def _search(raw: Mapping, file: str) -> dict[str, Any]:
    """``method``, ``parameters`` and ``run_cap``: what is searched and how often."""
    method = raw.get("method", "random")
    if method == "custom":
        raise SpecError(
            file, "method", "custom hands the search to a W&B Launch scheduler job (optuna, ax), which does not "
            f"apply here; use one of {', '.join(METHODS)} (bayes: hyperopt's TPE)"
        )  # fmt: skip
    if method not in METHODS:
        raise SpecError(
            file, "method", f"unknown method {method!r};{did_you_mean(method, METHODS)} valid: {', '.join(METHODS)}"
        )
    params_raw = raw.get("parameters")
    if not isinstance(params_raw, Mapping) or not params_raw:
        raise SpecError(file, "parameters", f"must be a non-empty mapping of parameters, got {params_raw!r}")
    run_cap = raw.get("run_cap")
    if run_cap is not None:
        run_cap = _int(run_cap, file, "run_cap", 1)
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
            optional_int[key] = _int(optional_int[key], file, key, low)
    storage = require_storage(raw.get("storage", "./runs"), file, "storage")
    options = _mapping(raw, "storage_options", file)
    _check_keys(options, OPTION_KEYS, file, "storage_options.")
    max_failures = require_int(raw.get("max_failures", DEFAULT_MAX_FAILURES), file, "max_failures", -1)
    name = raw.get("name", Path(file).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(file, "name", f"must be a plain name without '/', got {name!r}")
    ck = _mapping(raw, "checkpoint", file)
    _check_keys(ck, ("keep",), file, "checkpoint.")
    keep = None if ck.get("keep") is None else _int(ck["keep"], file, "checkpoint.keep", 1)
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
    if "metrics" in raw:
        raise SpecError(
            file, "metrics", "W&B's list of metrics (multi-objective, with method custom) is not supported; "
            "name one: metric: {name: bleu, goal: maximize}"
        )  # fmt: skip
    _check_keys(raw, TOP_KEYS, file, "")
    search = _search(raw, file)
    for p in search["parameters"]:
        if p.path[0] in SECTIONS:
            raise SpecError(file, f"parameters.{p.name}", f"{p.path[0]!r} is a section name; rename the parameter")
    scheduler = _scheduler(raw, file)
    return Spec(
        file=file,
        metric=_metric(raw, file, _metric_needed_by(search["method"], scheduler, raw)),
        scheduler=scheduler,
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
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sweep.yaml"
        >>> _ = path.write_text("method: grid\\nparameters: {optimizer.lr: {values: [1e-5, 3e-5]}}\\n")
        >>> spec = load_spec(path)
        >>> spec.metric, spec.parameters[0].path, spec.parameters[0].grid_values()
        (None, ('optimizer', 'lr'), [1e-05, 3e-05])
    """
    file = str(file)
    raw = load_raw(file, smoke_test=smoke_test, overrides=list(overrides), search=search)
    return validate(raw, file)


__all__ = ["TOP_KEYS", "load_spec", "scheduler_from_early_terminate", "validate"]
