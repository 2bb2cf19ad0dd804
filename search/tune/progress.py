"""Callbacks that watch a sweep: live progress, one line at a time (trials done / running / pending / errored and the
best so far), and good copies of the state a resume needs.

Ray's own reporter prints a large table per update; a line per event reads well in a terminal and in CI logs alike.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.logger import JsonLoggerCallback

from search.rundir import keep_good_state

MIN_INTERVAL_S = 5.0  # at most one line per interval for results; trial completions and errors always print


class ProgressCallback(tune.Callback):
    def __init__(self, metric: str, mode: str, stream: Any = None):
        self.metric, self.mode = metric, mode
        self.stream = stream
        self._last = 0.0
        self._start = time.monotonic()

    def __getstate__(self) -> dict:  # the tuner is pickled for resume; a stream is not picklable
        return {**self.__dict__, "stream": None}

    def _best(self, trials: list) -> tuple[float, Any] | None:
        """The best last value among trials that have not errored; NaN and infinities never count."""
        best = None
        for t in trials:
            v = (t.last_result or {}).get(self.metric)
            if t.status == "ERROR" or isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                continue
            if best is None or (v > best[0] if self.mode == "max" else v < best[0]):
                best = (v, t)
        return best

    def _line(self, trials: list, event: str) -> None:
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        done = counts.get("TERMINATED", 0)
        parts = [
            f"[{time.monotonic() - self._start:6.0f}s]",
            f"{done} done",
            f"{counts.get('RUNNING', 0)} running",
            f"{counts.get('PENDING', 0) + counts.get('PAUSED', 0)} pending",
        ]
        if counts.get("ERROR"):
            parts.append(f"{counts['ERROR']} errored")
        best = self._best(trials)
        if best is not None:
            parts.append(f"best {self.metric}={best[0]:.4g} ({best[1].trial_id})")
        print(" | ".join(parts) + (f" | {event}" if event else ""), file=self.stream or sys.stdout, flush=True)
        self._last = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if time.monotonic() - self._last >= MIN_INTERVAL_S:
            self._line(trials, "")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        value = (trial.last_result or {}).get(self.metric)
        shown = f"{value:.4g}" if isinstance(value, int | float) else "-"
        self._line(trials, f"{trial.trial_id} finished: {self.metric}={shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, f"{trial.trial_id} ERROR (see {trial.local_path}/error.txt)")


class StateKeeper(tune.Callback):
    """Keeps good copies of Ray's snapshot and ``tuner.pkl`` (``search.rundir.keep_good_state``) as the sweep goes,
    so that a run a full disk stopped can be resumed."""

    def __init__(self, run_dir: Path, every_s: float = 2.0):
        self.run_dir, self.every_s = run_dir, every_s
        self._last = 0.0

    def _keep(self, force: bool = False) -> None:
        # The wait starts only once a copy is made: until then every step tries, since a disk that fills up early
        # can truncate every snapshot Ray writes after its first (seen in CI: no good copy, the run lost).
        if force or time.monotonic() - self._last >= self.every_s:
            if keep_good_state(self.run_dir):
                self._last = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._keep()  # Ray writes its snapshot at the end of each step, just before this (so no on_trial_result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._keep(force=True)


class ResultLog(JsonLoggerCallback):
    """Ray's ``result.json`` writer, without losing reports: when a trial restarts from a checkpoint (a PBT exploit,
    a synchronous PBT pause, a retry), Ray 2.60 copies the trial's ``result.json`` from storage over the driver's
    local copy before appending to it; storage is synced only now and then, so the reports since the last sync were
    lost (a PBT trial's history missed iterations, a synchronous PBT run's was empty). The driver's local copy, when
    it has one, holds every report; only a new driver (``search resume``) starts from the stored file."""

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        if not Path(trial.local_path, file_name).exists():
            super()._restore_from_remote(file_name, trial)
