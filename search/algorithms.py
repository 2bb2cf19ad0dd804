"""Registries of search algorithms and schedulers, chosen by name, with their keyword arguments checked.

Like Ray's ``SCHEDULER_IMPORT``, names map to classes; unlike Ray's ``trimmed_kwargs``, an unknown keyword is an error
(a YAML typo must not vanish). ``metric`` and ``mode`` always come from the spec's ``metric``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from search.errors import SpecError

if TYPE_CHECKING:
    from search.spec import Scheduler, Spec

SEARCH_ALGORITHMS = {
    "grid": "ray.tune.search.basic_variant:BasicVariantGenerator",
    "random": "ray.tune.search.basic_variant:BasicVariantGenerator",
    "bayes": "ray.tune.search.hyperopt:HyperOptSearch",  # hyperopt's TPE
}
SCHEDULERS = {
    "fifo": "ray.tune.schedulers:FIFOScheduler",
    "asha": "ray.tune.schedulers:ASHAScheduler",
    "hyperband": "ray.tune.schedulers:HyperBandScheduler",
    "median": "ray.tune.schedulers:MedianStoppingRule",
    "pbt": "ray.tune.schedulers:PopulationBasedTraining",
}
OWN_KEYS = ("metric", "mode")  # set from the spec's metric


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def scheduler_class(name: str) -> type:
    return _load(SCHEDULERS[name])


def validate_scheduler(sched: Scheduler, file: str) -> None:
    """Known type, known keyword arguments (as the Ray class's signature names them)."""
    if sched.type not in SCHEDULERS:
        raise SpecError(file, "scheduler.type", f"unknown scheduler {sched.type!r}; valid: {', '.join(SCHEDULERS)}")
    accepted = [
        n for n in inspect.signature(scheduler_class(sched.type).__init__).parameters if n not in ("self", *OWN_KEYS)
    ]
    for key in sched.options:
        if key in OWN_KEYS:
            raise SpecError(file, f"scheduler.{key}", "comes from the spec's metric: {name, goal}; remove it here")
        if key not in accepted:
            raise SpecError(file, f"scheduler.{key}", f"unknown for {sched.type}; valid: {', '.join(accepted)}")
    numbers = {"max_t": 1, "grace_period": 1, "reduction_factor": 1.0001, "brackets": 1, "perturbation_interval": 1}
    for key, low in numbers.items():
        v = sched.options.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < low):
            raise SpecError(file, f"scheduler.{key}", f"must be a number >= {low}, got {v!r}")
    g, m = sched.options.get("grace_period"), sched.options.get("max_t")
    if g is not None and m is not None and g > m:
        raise SpecError(file, "scheduler.grace_period", f"must be <= max_t, got grace_period={g} max_t={m}")


def scheduler_from_early_terminate(et: Any, file: str) -> Scheduler:
    """W&B ``early_terminate: {type: hyperband, min_iter | max_iter, eta, s}`` -> Ray's ASHA.

    W&B's hyperband brackets sit at ``min_iter * eta**k``, or at ``max_iter / eta**k`` for ``k <= s``: the same
    rungs as ASHA with ``grace_period = min_iter`` (or ``max_iter / eta**s``) and ``reduction_factor = eta``.
    """
    from search.spec import Scheduler

    if not isinstance(et, Mapping):
        raise SpecError(file, "early_terminate", f"must be a mapping {{type: hyperband, min_iter: N}}, got {et!r}")
    allowed = ("type", "min_iter", "max_iter", "eta", "s", "strict")
    for k in et:
        if k not in allowed:
            raise SpecError(file, f"early_terminate.{k}", f"unknown key; valid keys: {', '.join(allowed)}")
    if et.get("type") != "hyperband":
        raise SpecError(file, "early_terminate.type", f"only hyperband is supported, got {et.get('type')!r}")
    for k in ("min_iter", "max_iter", "s"):
        v = et.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "s" else 1)):
            raise SpecError(file, f"early_terminate.{k}", f"must be a positive integer, got {v!r}")
    eta = et.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, int | float) or eta <= 1:
        raise SpecError(file, "early_terminate.eta", f"must be a number > 1, got {eta!r}")
    min_iter, max_iter, s = et.get("min_iter"), et.get("max_iter"), et.get("s")
    if min_iter is None and max_iter is None:
        raise SpecError(file, "early_terminate", "needs min_iter or max_iter (with s)")
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


def check_compatible(spec: Spec) -> None:
    """Rules that involve more than one key: PBT needs a checkpointing trainable and a Ray-sampled population."""
    from search.trainables import resolve

    info = resolve(spec.trainable, spec.base_dir, spec.file) if spec.trainable else None
    if spec.scheduler.type == "pbt":
        if spec.method == "bayes":
            raise SpecError(spec.file, "method", "PBT samples and mutates its own population; use method random")
        if spec.method == "grid":
            raise SpecError(spec.file, "method", "PBT mutates hyperparameters, a grid cannot; use method random")
        if info is not None and not info.checkpoints:
            raise SpecError(
                spec.file,
                "trainable",
                f"PBT restores trials from checkpoints, but {spec.trainable!r} does not checkpoint; "
                "use asha, or decorate the function with search.trainables.checkpointing",
            )
        if spec.run_cap is not None and spec.run_cap < 2:
            raise SpecError(spec.file, "run_cap", f"PBT needs a population of at least 2, got {spec.run_cap}")
        if spec.max_concurrent is not None and spec.max_concurrent < (spec.run_cap or 10):
            raise SpecError(
                spec.file,
                "max_concurrent",
                f"would split PBT's population of {spec.run_cap or 10} into batches that never meet, "
                f"got {spec.max_concurrent}; remove it (resources.cpu limits how many trials run at once)",
            )


def build_scheduler(spec: Spec) -> Any:
    """The Ray scheduler object for a spec (PBT mutations derived from ``parameters`` unless given)."""
    from search.space import pbt_mutations

    options = dict(spec.scheduler.options)
    if spec.scheduler.type == "fifo":
        return scheduler_class("fifo")()
    if spec.scheduler.type == "pbt":
        options.setdefault("hyperparam_mutations", pbt_mutations(spec.parameters))
        options.setdefault("time_attr", "training_iteration")
        # Asynchronous PBT livelocks when a donor cannot get a slot: the running trial keeps exploiting the
        # donor's stale checkpoint and never yields (seen with 1 free CPU for a population of 2). Synchronous
        # PBT pauses trials at each perturbation, so every member gets to run; `synch: false` opts out.
        options.setdefault("synch", True)
    return scheduler_class(spec.scheduler.type)(metric=spec.metric.name, mode=spec.metric.mode, **options)


def build_search_alg(spec: Spec) -> Any:
    """Ray's search algorithm for the spec's ``method``, limited to ``max_concurrent`` trials at once."""
    from ray.tune.search import ConcurrencyLimiter

    from search.space import hyperopt_space

    if spec.method == "bayes":
        alg = _load(SEARCH_ALGORITHMS["bayes"])(
            space=hyperopt_space(spec.parameters),
            metric=spec.metric.name,
            mode=spec.metric.mode,
            random_state_seed=spec.seed,
            n_initial_points=min(20, max(2, (spec.run_cap or 10) // 3)),
        )
        return ConcurrencyLimiter(alg, max_concurrent=spec.max_concurrent) if spec.max_concurrent else alg
    kwargs: dict[str, Any] = {"random_state": spec.seed}
    if spec.max_concurrent:
        kwargs["max_concurrent"] = spec.max_concurrent
    return _load(SEARCH_ALGORITHMS[spec.method])(**kwargs)
