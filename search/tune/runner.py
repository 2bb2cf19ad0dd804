"""A plan -> ``ray.tune.Tuner(...).fit()`` -> ``ResultGrid``; and ``Tuner.restore`` for interrupted sweeps.

Nothing is written before the whole spec, its trainable, model and data sections have been checked (``search.tune.plan``).
The merged spec is saved in the run directory (``search.rundir``), so that ``resume``, ``rank`` and ``export`` know what
was searched.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from search.errors import Interrupted, RunError, os_error_behind, os_error_line
from search.rundir import check_resumable, claim_run_dir, disk_full, read_run, save_spec
from search.spec import Spec
from search.storage import Remote, ray_storage
from search.tune.plan import Plan, plan
from search.tune.registry import (
    SCHEDULERS,
    build_scheduler,
    build_search_alg,
    build_stopper,
    complete_metric,
    num_samples,
)
from search.tune.repair import match_the_disk


class _AuthEnabledNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


_RAY = {"started": False}  # whether this process started the Ray it is connected to (_init_ray), for disconnect()


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
    _RAY["started"] = True


def _init_ray_checking(address: str | None, checks: tuple) -> None:
    """``_init_ray`` while ``checks`` (``Plan.pending``) run in a thread: Ray's start is seconds of waiting on its
    processes, the checks seconds of imports. A failed check shuts down a Ray started here and raises its error."""
    import ray

    started = not ray.is_initialized()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="checks") as pool:
        running = [pool.submit(check) for check in checks]
        _init_ray(address)
        try:
            for check in running:
                check.result()
        except BaseException:
            if started:
                ray.shutdown()
            raise


def disconnect() -> None:
    """Leave a Ray that a run, resume or extend of this process started or joined, as the process's exit would (a
    local Ray stops, a cluster goes on), at a moment the caller chooses; a Ray started by someone else stays."""
    import ray

    if _RAY["started"] and ray.is_initialized():
        ray.shutdown()
    _RAY["started"] = False


def _callbacks(spec: Spec, run_dir: Path | Remote, progress: bool) -> list:
    from search.tune.progress import ProgressCallback, ResultLog, StateKeeper

    # Good copies guard against a full local disk; an object store writes whole objects.
    callbacks: list = [ResultLog(), *([StateKeeper(run_dir)] if isinstance(run_dir, Path) else [])]
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
    p = plan(spec, storage=storage, name=name, defer=True)
    return launch(complete_metric(spec), p, address, progress)


def launch(
    spec: Spec, p: Plan, address: str | None, progress: bool, known: list[tuple[dict, float]] = ()
) -> tuple[Any, Path | Remote]:
    """Claim the run directory, save the spec, build the Tuner and fit it (``known``: see ``build_search_alg``)."""
    from ray import tune

    scheduler, search_alg = build_scheduler(spec), build_search_alg(spec, known)
    if spec.seed is not None:
        random.seed(spec.seed)  # PBT's explore/exploit draws from Python's random
    _init_ray_checking(address, p.pending)
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


def resume(run_dir: str | Path, *, address: str | None = None) -> tuple[Any, Path | Remote]:
    """Continue an interrupted sweep with ``Tuner.restore``: finished trials are kept, unfinished ones continue.

    ``run_dir`` is a path or a storage URI. The run config (progress and W&B callbacks included) comes back from the
    run directory as it was saved.
    """
    from ray import tune

    saved = read_run(run_dir)
    repaired = check_resumable(saved.dir, local=saved.source is None)
    if saved.source is None:  # a remote run's mirror holds no checkpoints to look for
        repaired += match_the_disk(saved.dir)
    for line in repaired:
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
