"""A validated spec -> ``ray.tune.Tuner(...).fit()`` -> ``ResultGrid``; and ``Tuner.restore`` for interrupted sweeps.

Nothing is written before the whole spec, its trainable, model and data sections have been checked. The merged spec is
saved in the run directory (``search.rundir``), so that ``resume``, ``rank`` and ``export`` know what was searched.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
import random
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.checks import require_storage
from search.errors import Interrupted, RunError, SpecError, UserError, os_error_behind, os_error_line
from search.rundir import EXTENSION, check_resumable, claim_run_dir, disk_full, read_run, save_spec
from search.sections import SECTIONS
from search.spec import Param, Spec, trial_config, validate
from search.spec.layers import apply_set
from search.spec.params import GRID_KEY, put_nested
from search.storage import Remote, is_uri, local_path, ray_storage
from search.trainables.common import use_trial_cpus
from search.tune.registry import (
    SCHEDULERS,
    build_scheduler,
    build_search_alg,
    build_stopper,
    check_spec,
    complete_metric,
    num_samples,
)

DATA_NON_PATH_KEYS = (
    "corpus", "format", "source_field", "target_field", "split", "name", "delimiter", "limit",
    "hub", "config", "revision", "pair", "sacrebleu", "langpair",  # dataset names and options (search.corpora)
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Everything the Tuner needs, built from a spec without side effects."""

    spec: Spec
    storage: Path | Remote  # a local (or shared) directory, or remote storage every node writes to
    name: str  # the run directory is the first free of storage/name, name-2, ... (claimed when the run starts)
    param_space: dict
    trial_fn: Callable


def _resolve_path(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_data_paths(data: Any, base: Path, key: str = "") -> Any:
    """Make every path in a ``data`` section absolute (trials run in their own working directories)."""
    if key in DATA_NON_PATH_KEYS:  # a name, or a mapping of names such as split: {dev: validation}
        return data
    if isinstance(data, dict):
        return {k: _resolve_data_paths(v, base, k) for k, v in data.items()}
    if isinstance(data, str) and key not in DATA_NON_PATH_KEYS:
        return _resolve_path(data, base)
    return data


def resolved_sections(spec: Spec, cache_dir: Path) -> dict:
    """``model``, ``data`` and ``settings`` as the trainable receives them: absolute paths, ``cache_dir`` (and for a
    built-in trainable ``spec_file``) added."""
    from search.models import locate_model
    from search.trainables import TRAINABLES

    out: dict[str, Any] = {"settings": {**spec.settings, "cache_dir": str(cache_dir)}}
    if spec.trainable in TRAINABLES:  # the built-in trainables name the sweep file in the errors a trial raises
        out["settings"]["spec_file"] = spec.file
        # ... and compute the sweep's metric and columns beside settings.metrics (those search.metrics knows)
        out["settings"]["sweep_metrics"] = [complete_metric(spec).metric.name, *spec.columns]
    if isinstance(spec.model, str):
        out["model"] = spec.model if is_uri(spec.model) else locate_model(spec.model, spec.base_dir)  # or a Hub id
    elif spec.model is not None:
        out["model"] = dict(spec.model)
    if spec.data:
        out["data"] = _resolve_data_paths(dict(spec.data), spec.base_dir)
    return out


def preflight(spec: Spec, sections: dict) -> None:
    """Checks that need more than the YAML: a trainable to run, a usable model and data for the built-in trainables."""
    from search.trainables import TRAINABLES, load_hook

    if not spec.trainable:
        raise SpecError(spec.file, "trainable", "missing; running needs one, e.g. --set trainable=finetune")
    if spec.wandb.get("mode") == "online" and not os.environ.get("WANDB_API_KEY") and not _wandb_logged_in():
        raise SpecError(spec.file, "wandb.mode", "online needs a W&B login; run `wandb login`, or use mode: offline")
    if spec.trainable not in TRAINABLES:
        return  # a user's function owns its sections
    if "model" in sections:
        from search.models import check_loadable, validate_model

        validate_model(sections["model"], spec.file)
        if isinstance(sections["model"], str) and not is_uri(sections["model"]):  # a remote one: config.json found
            check_loadable(sections["model"], spec.file)
    if "data" in sections:
        from search.corpora import validate_data

        validate_data(sections["data"], spec.file)
    check = load_hook(spec.trainable, "check")
    if check is not None:
        constants: dict = {}
        for p in spec.parameters:
            if p.is_constant:
                put_nested(constants, p.path, p.dist.value)
        searched = [p.name for p in spec.searched]
        check({**constants, **sections, "settings": dict(spec.settings)}, searched, spec.file)


def _wandb_logged_in() -> bool:
    try:
        import wandb

        return bool(wandb.Api(timeout=5).api_key)
    except Exception:
        return False


def _make_trial_fn(fn: Callable, params: tuple[Param, ...]) -> Callable:
    """Wrap a trainable: merge a conditional grid's combination, drop switched-off parameters, set threads."""

    def trial(config: dict) -> Any:
        use_trial_cpus()
        return fn(trial_config(config, params))

    trial.__name__ = getattr(fn, "__name__", "trial")
    trial.__qualname__ = trial.__name__
    return trial


def plan(spec: Spec, *, storage: str | None = None, name: str | None = None) -> Plan:
    """Build the Tuner's inputs; raises SpecError/DataError before anything is written."""
    from search.trainables import load_function, load_hook
    from search.tune.space import candidates, param_space

    check_spec(spec)
    location = require_storage(storage or spec.storage, spec.file, "--storage" if storage else "storage")
    if is_uri(location):
        where: Path | Remote = Remote.parse(location, dict(spec.storage_options))
        # Tokenizers and decoded passes are cached per node: remote storage is no place for a cache.
        cache_dir = Path(tempfile.gettempdir()) / "search-cache"
    else:
        where = local_path(location)
        cache_dir = where / ".cache"
    sections = resolved_sections(spec, cache_dir)
    preflight(spec, sections)
    prepare = load_hook(spec.trainable, "prepare")
    if prepare is not None:
        sections["settings"] = prepare(dict(sections["settings"]), candidates(spec.parameters))
    fn = load_function(spec.trainable, spec.base_dir, spec.file)
    space = {**param_space(spec.parameters, spec.method), **sections}
    return Plan(spec, where, name or spec.name, space, _make_trial_fn(fn, spec.parameters))


class _AuthEnabledNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _init_ray(address: str | None) -> None:
    import ray

    # Snapshot the experiment state every few seconds (Ray's "auto" waits longer), so that a sweep killed
    # with SIGKILL loses as few finished trials as possible on `search resume`.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # ...and do not warn that checkpoint-triggered snapshots come often: that is the point.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    # "local" starts a fresh Ray even when another local cluster is running; a cluster is only joined on request.
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    # Ray 2.60 turns token authentication on for a new local cluster (a token in ~/.ray/auth_token, made once) and
    # says so on every start; keep the protection, drop the note. Its warning that auth is *disabled* stays.
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_AuthEnabledNote())
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    ray.init(address=address, **kwargs)


def _callbacks(spec: Spec, run_dir: Path | Remote, progress: bool) -> list:
    from search.tune.progress import ProgressCallback, StateKeeper

    # Good copies guard against a full local disk; an object store writes whole objects.
    callbacks: list = [StateKeeper(run_dir)] if isinstance(run_dir, Path) else []
    if progress:
        callbacks.append(ProgressCallback(spec.metric.name, spec.metric.mode))
    mode = spec.wandb.get("mode", "disabled" if not spec.wandb else "offline")
    if mode != "disabled":
        from search.tune.wandb import WandbCallback

        project = spec.wandb.get("project") or spec.extra.get("project") or spec.name
        kwargs = {k: spec.wandb[k] for k in ("entity", "group", "tags") if k in spec.wandb}
        if "entity" not in kwargs and "entity" in spec.extra:
            kwargs["entity"] = spec.extra["entity"]
        wandb_dir = run_dir if isinstance(run_dir, Path) else Path(tempfile.gettempdir()) / "search-wandb"
        callbacks.append(WandbCallback(spec, run_dir, project=project, mode=mode, dir=str(wandb_dir), **kwargs))
    return callbacks


def _run_config(spec: Spec, run_dir: Path | Remote, progress: bool) -> Any:
    from ray import tune

    storage_path, filesystem = ray_storage(run_dir.parent)
    return tune.RunConfig(
        name=run_dir.name,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        callbacks=_callbacks(spec, run_dir, progress),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.checkpoint.keep or (4 if spec.scheduler.type == "pbt" else 2),
            checkpoint_score_attribute=spec.metric.name,
            checkpoint_score_order=spec.metric.mode,
        ),
        # A trial whose node died (or whose worker crashed) is restarted from its last checkpoint.
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # Trials run in a working directory of Ray's; files a trainable writes there (hypotheses.txt, ...) are
        # copied into its trial directory, where rank/export/plot read them.
        sync_config=tune.SyncConfig(sync_artifacts=True),
        stop=build_stopper(spec),  # metric.target: the sweep ends once a trial reaches it
        verbose=0,
    )


@contextlib.contextmanager
def _stop_gracefully_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) and SIGTERM stop the sweep the way Ray Tune stops it on SIGUSR1: the state is saved and the
    trials end, never mid-write. The event tells whether that happened; a second signal interrupts at once."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def stop(signum: int, frame: Any) -> None:
        stopped.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, previous[sig])
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    ray_handler = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ray's own SIGINT handler would replace ours
    try:
        yield stopped
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, previous[sig])
        if ray_handler is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = ray_handler


def _disk_error(error: Exception, run_dir: Path) -> Exception:
    """A sweep Ray could not finish writing, as one line with the path and errno (a full disk leaves Ray failing on
    a truncated file rather than on the write itself); any other error as it is."""
    cause = os_error_behind(error)
    if cause is None:
        if not disk_full(run_dir):
            return error
        cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return RunError(f"{os_error_line(cause, run_dir)}; free space, then `search resume {run_dir}`")


def _fit(tuner: Any, run_dir: Path | Remote) -> Any:
    """``tuner.fit()``; a full disk or another OS error becomes one :class:`RunError` line, and a sweep a signal
    stopped raises :class:`Interrupted`."""
    with _stop_gracefully_on_signals() as stopped:
        try:
            results = tuner.fit()
        except Exception as error:
            raise (_disk_error(error, run_dir) if isinstance(run_dir, Path) else error) from error
    if isinstance(run_dir, Path) and disk_full(run_dir):  # trials failed on it, or Ray could not save their state
        raise _disk_error(RuntimeError("the disk filled up"), run_dir)
    if stopped.is_set():
        raise Interrupted(str(run_dir))
    return results


@contextlib.contextmanager
def _services(p: Plan) -> Iterator[dict]:
    """The param space with the settings of the trainable's ``start`` hook, run on the driver once Ray is up.

    ``start(settings) -> (settings, handle)`` starts what the trials of one sweep share (the decode trainable's
    board of beam passes, a Ray actor); the driver holds the handle, so the service lives as long as the sweep, and
    ends it when the sweep ends.
    """
    from search.trainables import load_hook

    start = load_hook(p.spec.trainable, "start")
    if start is None:
        yield p.param_space
        return
    settings, handle = start(dict(p.param_space["settings"]))
    try:
        yield {**p.param_space, "settings": settings}
    finally:
        import ray

        if isinstance(handle, ray.actor.ActorHandle):
            ray.kill(handle)


def _with_resources(p: Plan) -> Any:
    from ray import tune

    return tune.with_resources(p.trial_fn, {"cpu": p.spec.resources.cpu, "gpu": p.spec.resources.gpu})


def run(
    spec: Spec,
    *,
    address: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    progress: bool = True,
) -> tuple[Any, Path | Remote]:
    """Run a sweep with Ray Tune and return ``(ResultGrid, run_dir)`` (a path, or a remote location: ``str()`` of
    it is the URI every command takes).

    Example:
        >>> from search import load_spec, run
        >>> results, run_dir = run(load_spec("experiments/subsequence_asha.yaml", smoke_test=True))  # doctest: +SKIP
    """
    p = plan(spec, storage=storage, name=name)
    return _launch(complete_metric(spec), p, address, progress)


def _launch(
    spec: Spec, p: Plan, address: str | None, progress: bool, known: list[tuple[dict, float]] = ()
) -> tuple[Any, Path | Remote]:
    """Claim the run directory, save the spec, build the Tuner and fit it (``known``: see ``build_search_alg``)."""
    from ray import tune

    scheduler, search_alg = build_scheduler(spec), build_search_alg(spec, known)
    if spec.seed is not None:
        random.seed(spec.seed)  # PBT's explore/exploit draws from Python's random
    _init_ray(address)
    run_dir = claim_run_dir(p.storage, p.name)
    save_spec(spec, run_dir, cuts_trials=SCHEDULERS[spec.scheduler.type].cuts_trials)
    with _services(p) as param_space:
        tuner = tune.Tuner(
            _with_resources(p),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=num_samples(spec),
                reuse_actors=True,  # a worker keeps its loaded model and imports between trials
            ),
            run_config=_run_config(spec, run_dir, progress),
        )
        return _fit(tuner, run_dir), run_dir


def extend(
    run_dir: str | Path,
    *,
    run_cap: int | None = None,
    overrides: list[str] = (),
    address: str | None = None,
    progress: bool = True,
) -> tuple[Any, Path | Remote]:
    """Run more trials into a finished sweep's run directory; none of its trials runs again.

    A random or bayes sweep runs ``run_cap`` more trials: hyperopt starts from the finished trials' configs and
    results (``points_to_evaluate`` with ``evaluated_rewards``), random search draws with a new seed. A grid runs the
    combinations of its grid (changed with ``overrides``, e.g. ``parameters.num_beams={values: [4, 8, 12]}``) that
    have not finished. The new trials are a run of their own in ``RUN_DIR/extend`` (``extend-2``, ...), which
    ``rank`` reads with the run's own trials as one table. ``Tuner.restore`` cannot add trials (Ray issue 42221).
    """
    from search.report import FINISHED, rank

    saved = read_run(run_dir)
    raw = copy.deepcopy(dict(saved.spec.raw))
    for item in overrides:
        raw = apply_set(raw, item, saved.spec.file)
    if raw.get("method") != "grid":
        if run_cap is None:
            raise SpecError(saved.location, "--run-cap", "missing: how many more trials? e.g. --run-cap 8")
        raw["run_cap"] = run_cap
        raw["seed"] = (raw.get("seed") or 0) + len(saved.trials())  # new draws, not the sweep's first ones again
    elif run_cap is not None:
        raise SpecError(saved.location, "--run-cap", "a grid runs each new combination once; add values with --set")
    spec = complete_metric(validate(raw, saved.spec.file))
    ranking = rank(saved, bootstrap=0)
    finished = [row for row in ranking.rows if row.status == FINISHED and row.value is not None]
    p = plan(spec, storage=saved.location, name=EXTENSION)
    if spec.method == "grid":
        p = _remaining_grid(p, [row.params for row in finished], saved.location)
    known = [(row.params, row.value) for row in finished] if spec.method == "bayes" else []
    return _launch(spec, p, address, progress, known)


def _remaining_grid(p: Plan, done: list[dict], location: str) -> Plan:
    """``p`` with its grid cut to the combinations not among ``done`` (searched values by dotted name)."""
    from ray import tune

    from search.report import flatten
    from search.tune.space import grid_combinations

    searched = {param.name for param in p.spec.searched}
    remaining = [
        combo for combo in grid_combinations(p.spec.parameters)
        if {k: v for k, v in flatten(combo).items() if k in searched} not in done
    ]  # fmt: skip
    if not remaining:
        raise UserError(f"{location}: every combination of the grid has finished; add values with --set")
    space = {k: v for k, v in p.param_space.items() if k in SECTIONS}
    return Plan(p.spec, p.storage, p.name, {**space, GRID_KEY: tune.grid_search(remaining)}, p.trial_fn)


def resume(run_dir: str | Path, *, address: str | None = None) -> tuple[Any, Path | Remote]:
    """Continue an interrupted sweep with ``Tuner.restore``: finished trials are kept, unfinished ones continue.

    ``run_dir`` is a path or a storage URI. The run config (progress and W&B callbacks included) comes back from the
    run directory as it was saved.
    """
    from ray import tune

    saved = read_run(run_dir)
    for line in check_resumable(saved.dir, local=saved.source is None):
        print(line, file=sys.stderr)
    where = saved.source or saved.dir
    p = plan(saved.spec, storage=str(where.parent), name=where.name)
    if isinstance(where, Remote):  # the saved spec's storage options, with the URI's own
        p = Plan(p.spec, where.parent, p.name, p.param_space, p.trial_fn)
    _init_ray(address)
    path, filesystem = ray_storage(where)
    with _services(p) as param_space:
        tuner = tune.Tuner.restore(
            path,
            trainable=_with_resources(p),
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
            storage_filesystem=filesystem,
        )
        return _fit(tuner, where), where
