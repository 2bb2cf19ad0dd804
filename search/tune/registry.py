"""Registries of search algorithms and schedulers, chosen by name, with their keyword arguments checked.

Like Ray's ``SCHEDULER_IMPORT``, names map to classes; unlike Ray's ``trimmed_kwargs``, an unknown keyword is an error
(a YAML typo must not vanish). ``metric`` and ``mode`` always come from the spec's ``metric``, which
:func:`complete_metric` takes from the trainable when a grid or random spec names none. Each scheduler carries what the
rest of the flow must know of it: whether it cuts trials short, whether it restores trials from checkpoints. W&B's
``metric.target`` becomes a Ray Tune stopper (:func:`build_stopper`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search.checks import is_number
from search.errors import SpecError
from search.spec import Spec, validate


@dataclass(frozen=True)
class SchedulerEntry:
    target: str  # module:class
    cuts_trials: bool = False  # stops trials early: the ranking lists them as STOPPED, never as winners
    needs_checkpoints: bool = False  # restores trials from checkpoints, so the trainable must write them


SEARCH_ALGORITHMS = {
    "grid": "ray.tune.search.basic_variant:BasicVariantGenerator",
    "random": "ray.tune.search.basic_variant:BasicVariantGenerator",
    "bayes": "ray.tune.search.hyperopt:HyperOptSearch",  # hyperopt's TPE
}
SCHEDULERS = {
    "fifo": SchedulerEntry("ray.tune.schedulers:FIFOScheduler"),
    "asha": SchedulerEntry("ray.tune.schedulers:ASHAScheduler", cuts_trials=True),
    "hyperband": SchedulerEntry("ray.tune.schedulers:HyperBandScheduler", cuts_trials=True),
    "median": SchedulerEntry("ray.tune.schedulers:MedianStoppingRule", cuts_trials=True),
    # Ray's PBT that never exploits a spent trial (search/tune/pbt.py)
    "pbt": SchedulerEntry("search.tune.pbt:SpentAwarePBT", needs_checkpoints=True),
}
OWN_KEYS = ("metric", "mode")  # set from the spec's metric
# Scheduler arguments with a lower bound, checked before Ray sees them.
LOWER_BOUNDS = {"max_t": 1, "grace_period": 1, "reduction_factor": 1.0001, "brackets": 1, "perturbation_interval": 1}


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def scheduler_class(name: str) -> type:
    return _load(SCHEDULERS[name].target)


def validate_scheduler(spec: Spec) -> None:
    """Known type, known keyword arguments (as the Ray class's signature names them), sane bounds."""
    sched, file = spec.scheduler, spec.file
    if sched.type not in SCHEDULERS:
        raise SpecError(file, "scheduler.type", f"unknown scheduler {sched.type!r}; valid: {', '.join(SCHEDULERS)}")
    signature = inspect.signature(scheduler_class(sched.type).__init__).parameters
    accepted = [n for n in signature if n not in ("self", *OWN_KEYS)]
    for key in sched.options:
        if key in OWN_KEYS:
            raise SpecError(file, f"scheduler.{key}", "comes from the spec's metric: {name, goal}; remove it here")
        if key not in accepted:
            raise SpecError(file, f"scheduler.{key}", f"unknown for {sched.type}; valid: {', '.join(accepted)}")
    for key, low in LOWER_BOUNDS.items():
        v = sched.options.get(key)
        if v is not None and (not is_number(v) or v < low):
            raise SpecError(file, f"scheduler.{key}", f"must be a number >= {low}, got {v!r}")
    g, m = sched.options.get("grace_period"), sched.options.get("max_t")
    if g is not None and m is not None and g > m:
        raise SpecError(file, "scheduler.grace_period", f"must be <= max_t, got grace_period={g} max_t={m}")


def check_population(spec: Spec) -> None:
    """PBT samples and mutates a population of at least 2 that must meet: Ray's sampling, no batches."""
    if spec.method == "bayes":
        raise SpecError(spec.file, "method", "PBT samples and mutates its own population; use method random")
    if spec.method == "grid":
        raise SpecError(spec.file, "method", "PBT mutates hyperparameters, a grid cannot; use method random")
    if spec.run_cap is not None and spec.run_cap < 2:
        raise SpecError(spec.file, "run_cap", f"PBT needs a population of at least 2, got {spec.run_cap}")
    if spec.max_concurrent is not None and spec.max_concurrent < spec.samples:
        raise SpecError(
            spec.file,
            "max_concurrent",
            f"would split PBT's population of {spec.samples} into batches that never meet, "
            f"got {spec.max_concurrent}; remove it (resources.cpu limits how many trials run at once)",
        )


def complete_metric(spec: Spec) -> Spec:
    """``spec`` with a metric: its own, or the ``PRIMARY_METRIC`` its trainable's module declares (a grid or random
    spec may name none, as in W&B). The metric enters the spec's ``raw`` too, so that the spec saved with a run reads
    back complete without the trainable. Raises a one-line SpecError when neither names one.

    Example:
        >>> spec = validate({"method": "grid", "parameters": {"x": {"values": [1, 2]}}}, "s.yaml")
        >>> complete_metric(spec)
        Traceback (most recent call last):
        ...
        search.errors.SpecError: s.yaml: metric: missing; name one (e.g. metric: {name: bleu, goal: maximize}), or a trainable whose module declares PRIMARY_METRIC
    """
    if spec.metric is not None:
        return spec
    if not spec.trainable:
        raise SpecError(
            spec.file, "metric", "missing; name one (e.g. metric: {name: bleu, goal: maximize}), or a trainable "
            "whose module declares PRIMARY_METRIC"
        )  # fmt: skip
    from search.trainables import primary_metric

    declared = primary_metric(spec.trainable, spec.base_dir, spec.file)
    if declared is None:
        raise SpecError(
            spec.file, "metric", f"missing, and trainable {spec.trainable!r} declares no PRIMARY_METRIC to rank "
            "trials by; write e.g. metric: {name: bleu, goal: maximize}"
        )  # fmt: skip
    if not isinstance(declared, Mapping):
        raise SpecError(
            spec.file,
            "trainable",
            f"{spec.trainable!r}: PRIMARY_METRIC must be a mapping {{name, goal}}, got {declared!r}",
        )
    return validate({**spec.raw, "metric": dict(declared)}, spec.file)


def check_spec(spec: Spec) -> None:
    """The rules that need Ray or the trainable: the scheduler's arguments, what PBT needs of the sweep, and a metric
    (the spec's, else the trainable's primary one).

    ``search.spec.validate`` has checked the YAML; this imports Ray's scheduler classes and the trainable (to see
    whether it writes checkpoints, and which metric it ranks by when the spec names none).
    """
    from search.trainables import trainable_info

    validate_scheduler(spec)
    info = trainable_info(spec.trainable, spec.base_dir, spec.file) if spec.trainable else None
    if info is not None:
        complete_metric(spec)
    if spec.scheduler.type == "pbt":
        check_population(spec)
    if SCHEDULERS[spec.scheduler.type].needs_checkpoints and info is not None and not info.checkpoints:
        raise SpecError(
            spec.file,
            "trainable",
            f"{spec.scheduler.type.upper()} restores trials from checkpoints, but {spec.trainable!r} does not "
            "checkpoint; use asha, or decorate the function with search.trainables.checkpointing",
        )


def build_scheduler(spec: Spec) -> Any:
    """The Ray scheduler object for a spec (PBT mutations derived from ``parameters`` unless given)."""
    from search.tune.space import pbt_mutations

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


def build_search_alg(spec: Spec, known: list[tuple[dict, float]] = ()) -> Any:
    """Ray's search algorithm for the spec's ``method``, limited to ``max_concurrent`` trials at once.

    ``known``: ``(searched values by dotted name, metric)`` of trials that already ran (``search extend``): hyperopt
    starts from them as finished trials of its own (none runs again).
    """
    from ray.tune.search import ConcurrencyLimiter

    from search.tune.space import hyperopt_space

    if spec.method == "bayes":
        alg = _load(SEARCH_ALGORITHMS["bayes"])(
            space=hyperopt_space(spec.parameters),
            metric=spec.metric.name,
            mode=spec.metric.mode,
            random_state_seed=spec.seed,
            # hyperopt counts the known trials among its random start-up ones
            n_initial_points=min(20, max(2, (spec.samples + len(known)) // 3)),
        )
        _warm_start(alg, spec, known)
        return ConcurrencyLimiter(alg, max_concurrent=spec.max_concurrent) if spec.max_concurrent else alg
    kwargs: dict[str, Any] = {"random_state": spec.seed}
    if spec.max_concurrent:
        kwargs["max_concurrent"] = spec.max_concurrent
    return _load(SEARCH_ALGORITHMS[spec.method])(**kwargs)


def _warm_start(alg: Any, spec: Spec, known: list[tuple[dict, float]]) -> None:
    """Give hyperopt the trials that already ran as finished trials of its own, with their losses.

    Ray 2.60's ``HyperOptSearch`` takes ``points_to_evaluate`` only to run them again (it has no
    ``evaluated_rewards``), so the points go into its hyperopt ``Trials`` the way it puts them there itself
    (``generate_trials_to_calculate``), marked done with the loss it would record (``metric_op`` x value).
    """
    import hyperopt as hpo
    from hyperopt.fmin import generate_trials_to_calculate

    from search.tune.space import hyperopt_point

    pairs = [(point, value) for values, value in known if (point := hyperopt_point(spec.parameters, values))]
    if not pairs:
        return
    trials = generate_trials_to_calculate([point for point, _ in pairs])
    for doc, (_, value) in zip(trials._dynamic_trials, pairs, strict=True):  # refresh() lists them in .trials
        doc["state"] = hpo.JOB_STATE_DONE
        doc["result"] = {"loss": alg.metric_op * value, "status": hpo.STATUS_OK}
    trials.refresh()
    alg._hpopt_trials = trials


def num_samples(spec: Spec) -> int:
    """Ray's ``num_samples``: a grid enumerates its combinations itself."""
    return 1 if spec.method == "grid" else spec.samples


class MetricTarget:
    """W&B's ``metric.target``: once a trial reports the metric at or beyond the target (``>=`` when maximizing,
    ``<=`` when minimizing), that trial stops and so does the sweep.

    W&B stops starting runs and lets the running ones finish; Ray's ``stop_all`` ends the experiment, so the trials
    still running stop at their next report, their reports so far kept. The Ray side is :class:`TargetStopper`.

    Example:
        >>> stop = MetricTarget("bleu", "max", 30.0)
        >>> stop("t1", {"bleu": 29.5}), stop.stop_all()
        (False, False)
        >>> stop("t2", {"bleu": 30.0}), stop.stop_all(), stop.reached_by
        (True, True, 't2')
    """

    def __init__(self, metric: str, mode: str, target: float):
        self.metric, self.mode, self.target = metric, mode, target
        self.reached_by: str | None = None  # the first trial that reached the target

    def __call__(self, trial_id: str, result: dict) -> bool:
        value = result.get(self.metric)
        if not is_number(value):
            return False
        if value >= self.target if self.mode == "max" else value <= self.target:
            self.reached_by = self.reached_by or trial_id
            return True
        return False

    def stop_all(self) -> bool:
        return self.reached_by is not None


def _stopper_class() -> type:
    """``TargetStopper``: :class:`MetricTarget` as a Ray Tune ``Stopper``, defined on first use so that importing this
    module (``search validate``) does not import Ray (~3 s). It is a module global once defined: pickle finds it by
    name, as any class (Ray pickles the stopper with the run's state, and ``resume`` reads it back)."""
    cls = globals().get("TargetStopper")
    if cls is None:
        from ray.tune.stopper import Stopper

        class TargetStopper(MetricTarget, Stopper):
            __doc__ = MetricTarget.__doc__

        TargetStopper.__module__, TargetStopper.__qualname__ = __name__, "TargetStopper"
        globals()["TargetStopper"] = cls = TargetStopper
    return cls


def __getattr__(name: str) -> Any:
    """PEP 562: ``search.tune.registry.TargetStopper`` (see :func:`_stopper_class`)."""
    if name == "TargetStopper":
        return _stopper_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_stopper(spec: Spec) -> Any:
    """Ray Tune's stopper for the spec's ``metric.target`` (for ``RunConfig(stop=...)``), or None without a target."""
    if spec.metric is None or spec.metric.target is None:
        return None
    return _stopper_class()(spec.metric.name, spec.metric.mode, spec.metric.target)
