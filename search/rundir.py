"""The one reader and writer of run directories: the saved spec, the trials and the files they left.

A run directory is Ray Tune's experiment directory with our spec beside it::

    search_spec.yaml                 the merged spec the run started with, and facts the readers need
    experiment_state-<time>.json     Ray's snapshot of every trial (status, config, last result); the newest counts
    experiment_state.good.json       the newest whole snapshot, tuner.good.pkl: good copies a full disk cannot cut
    <trial dir>/result.json          one JSON line per report
    <trial dir>/params.json          the config the trial started with
    <trial dir>/error.txt            the traceback of an errored trial
    <trial dir>/checkpoint_NNNNNN/   checkpoints Ray kept
    <trial dir>/hypotheses.txt ...   files the trainable wrote (``search.trainables.outputs``)

Reading needs neither Ray nor the user's trainable: the spec is validated as YAML only, and Ray's JSON is read as
JSON (values Ray could only pickle are left out). So ``rank``, ``plot`` and ``export`` work on a copied run, on a
machine without the trainable's file, and after the file has moved.

Example:
    >>> unique_run_dir(Path("/nonexistent/runs"), "sweep")
    PosixPath('/nonexistent/runs/sweep')
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search.errors import RunError, SpecError, UserError
from search.files import atomic_write
from search.spec import Spec, validate
from search.storage import Remote, is_uri, mirror_dir

SPEC_FILE = "search_spec.yaml"
EXTENSION = "extend"  # `search extend` runs more trials in RUN_DIR/extend, extend-2, ...
STATE_PATTERN = "experiment_state-*.json"  # Ray's TuneController.CKPT_FILE_TMPL
GOOD_STATE = "experiment_state.good.json"  # the newest whole snapshot (outside Ray's pattern)
GOOD_TUNER = "tuner.good.pkl"
MIN_FREE = 1 << 20  # bytes free on a run's disk below which it counts as full (Ray cannot save its state there)
_PICKLED = object()  # stands for a value Ray could only pickle


def unique_run_dir(storage: Path | Remote, name: str) -> Path | Remote:
    """``storage/name``, or ``storage/name-2``, ``-3``... so that no earlier run is ever mixed into a new one."""
    candidate, n = storage / name, 1
    while candidate.exists():
        n += 1
        candidate = storage / f"{name}-{n}"
    return candidate


def claim_run_dir(storage: Path | Remote, name: str) -> Path | Remote:
    """Create and return the first free of ``storage/name``, ``name-2``, ...: creating is the claim, so two runs
    started at once never share a directory. On remote storage a run directory exists once a file is in it, so the
    claim is the saved spec (:func:`save_spec`); object stores have no atomic create, so two runs of one name started
    in the same second could share it there."""
    if isinstance(storage, Remote):
        return unique_run_dir(storage, name)
    storage.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = unique_run_dir(storage, name)
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:  # another run claimed it between the look and the mkdir
            continue


def save_spec(spec: Spec, run_dir: Path | Remote, *, cuts_trials: bool) -> None:
    """Write ``search_spec.yaml``: the spec's file and merged mapping, and whether the scheduler cuts trials short."""
    record = {"file": str(Path(spec.file).resolve()), "spec": dict(spec.raw), "cuts_trials": cuts_trials}
    text = yaml.safe_dump(record, sort_keys=False)
    if isinstance(run_dir, Remote):
        run_dir.write_bytes(SPEC_FILE, text.encode())
    else:
        atomic_write(Path(run_dir) / SPEC_FILE, text)


def _record(run_dir: Path) -> dict:
    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise SpecError(str(run_dir), "", f"not a run directory of ours: {SPEC_FILE} is missing")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_saved_spec(run_dir: str | Path) -> Spec:
    """The spec a run was started with (as saved in its run directory), checked as YAML only."""
    return read_run(run_dir).spec


def disk_full(run_dir: Path) -> bool:
    """Whether the run's disk has less than ``MIN_FREE`` bytes free."""
    return shutil.disk_usage(run_dir).free < MIN_FREE


def _snapshot(path: Path) -> dict | None:
    """Ray's experiment snapshot in ``path``, or None when it is not whole (a full disk truncates it)."""
    try:
        snapshot = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return snapshot if isinstance(snapshot, dict) and isinstance(snapshot.get("trial_data"), list) else None


def keep_good_state(run_dir: Path) -> bool:
    """Copy Ray's newest snapshot (when whole) and ``tuner.pkl`` (when not empty) to ``GOOD_STATE`` and
    ``GOOD_TUNER``: Ray rewrites both in place, so a full disk can leave them truncated. Returns whether the
    snapshot was copied (the previous good copy stays when it was not)."""
    states, copied = sorted(run_dir.glob(STATE_PATTERN)), False
    with contextlib.suppress(OSError):  # no space for the copy: the previous good one stays
        tuner = run_dir / "tuner.pkl"
        if tuner.is_file() and tuner.stat().st_size and not (run_dir / GOOD_TUNER).exists():
            atomic_write(run_dir / GOOD_TUNER, tuner.read_bytes())
        if states and _snapshot(states[-1]) is not None:
            atomic_write(run_dir / GOOD_STATE, states[-1].read_bytes())
            copied = True
    return copied


def check_resumable(run_dir: Path, *, local: bool = True) -> list[str]:
    """Make a run resumable or refuse in one line: Ray would start a damaged run over and overwrite ``tuner.pkl``,
    losing every finished trial. A truncated snapshot or ``tuner.pkl`` is put back from the good copies that
    :func:`keep_good_state` kept; returns what was put back. ``local=False``: ``run_dir`` is the mirror of a remote
    run (an object store writes whole files, and its disk cannot fill up), so only the files' presence is checked."""
    tuner, repaired = run_dir / "tuner.pkl", []
    if not tuner.is_file():
        raise SpecError(str(run_dir), "", "the sweep never started (no tuner.pkl); start it again with `search run`")
    if not local:
        if not any(run_dir.glob(STATE_PATTERN)):
            raise RunError(f"{run_dir}: no {STATE_PATTERN} (no trial was recorded); start the sweep again")
        return []
    if disk_full(run_dir):
        raise RunError(f"{run_dir}: No space left on device (errno {errno.ENOSPC}); free space, then resume")
    if tuner.stat().st_size == 0:
        if not (run_dir / GOOD_TUNER).is_file():
            raise RunError(f"{tuner}: empty (the disk was full when it was written?); this run cannot be resumed")
        atomic_write(tuner, (run_dir / GOOD_TUNER).read_bytes())
        repaired.append(f"{tuner}: was empty; put back from {GOOD_TUNER}")
    states = sorted(run_dir.glob(STATE_PATTERN))
    if not states:
        raise RunError(
            f"{run_dir}: no {STATE_PATTERN} (no trial was recorded); start the sweep again with `search run`"
        )
    if _snapshot(states[-1]) is None:
        if _snapshot(run_dir / GOOD_STATE) is None:
            raise RunError(f"{states[-1]}: damaged, and no good copy; resuming would start the sweep over")
        atomic_write(states[-1], (run_dir / GOOD_STATE).read_bytes())
        repaired.append(f"{states[-1]}: was damaged; put back from {GOOD_STATE} (trials after it run again)")
    return repaired


def _without_pickles(value: Any) -> Any:
    """A JSON object hook: Ray's ``CLOUDPICKLE_FALLBACK`` values become ``_PICKLED``."""
    if isinstance(value, dict) and value.get("_type") == "CLOUDPICKLE_FALLBACK":
        return _PICKLED
    return value


def _has_pickles(value: Any) -> bool:
    if value is _PICKLED:
        return True
    if isinstance(value, dict):
        return any(_has_pickles(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_pickles(v) for v in value)
    return False


def read_lines(path: Path) -> list[str] | None:
    """A text file's lines (without their newlines), or None when it does not exist."""
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").split("\n")[:-1] if path.stat().st_size else []


def read_history(trial_dir: Path) -> list[dict]:
    """Every report of a trial, in order (its ``result.json``)."""
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Trial:
    """One trial as Ray's newest snapshot recorded it, and its directory."""

    trial_id: str
    status: str  # Ray's: PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    config: dict  # the config Tune gave it (the current one under PBT)
    last_result: dict
    path: Path
    tag: str  # Ray's experiment tag as first given ("3_lr=0.001"), by which PBT's logs name trials

    def history(self) -> list[dict]:
        """Every report, in order (``result.json``)."""
        return read_history(self.path)

    def error_line(self) -> str | None:
        """The last line of the trial's traceback, or None when it did not error."""
        path = self.path / "error.txt"
        if path.is_file():
            lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            return lines[-1][:200] if lines else "error"
        return "error" if self.status == "ERROR" else None

    def best_checkpoint(self, metric: str, mode: str) -> Path | None:
        """The kept checkpoint directory whose report was best by ``metric`` (as Ray's ``get_best_checkpoint``)."""
        reported: dict[str, Any] = {}
        for result in self.history():
            if result.get("checkpoint_dir_name"):
                reported[result["checkpoint_dir_name"]] = result.get(metric)
        kept = [
            (self.path / name, float(value)) for name, value in reported.items()
            if (self.path / name).is_dir() and isinstance(value, int | float) and not math.isnan(value)
        ]  # fmt: skip
        if not kept:
            return None
        sign = -1.0 if mode == "min" else 1.0
        return max(kept, key=lambda item: sign * item[1])[0]


def _trial(run_dir: Path, state: list) -> Trial:
    info = json.loads(state[0], object_hook=_without_pickles)
    meta = json.loads(state[1], object_hook=_without_pickles) if len(state) > 1 else {}
    path = run_dir / info["relative_logdir"]
    config = info.get("config")
    if not isinstance(config, dict) or _has_pickles(config):
        params = path / "params.json"
        config = json.loads(params.read_text(encoding="utf-8")) if params.is_file() else {}
    last = meta.get("last_result")
    if not isinstance(last, dict):
        history = read_history(path)
        last = history[-1] if history else {}
    tag = str(info.get("experiment_tag") or "").split("@perturbed")[0]
    return Trial(info["trial_id"], str(info["status"]), config, last, path, tag)


@dataclass(frozen=True)
class Run:
    """A run directory: its spec, what the runner recorded of it, and its trials. A run on remote storage is read
    from its local mirror ``dir``; ``source`` is where it lives."""

    dir: Path
    spec: Spec
    cuts_trials: bool  # the scheduler stopped trials early (they rank as STOPPED, never as winners)
    source: Remote | None = None

    @property
    def location(self) -> str:
        """Where the run lives, as a user names it (a path or a URI)."""
        return str(self.source or self.dir)

    def local(self, path: Path) -> Path:
        """``path`` (under ``dir``) with its files on this machine: a remote run's checkpoints are fetched on demand."""
        if self.source is not None:
            self.source.fetch(self.dir, str(Path(path).relative_to(self.dir)))
        return path

    def publish(self, paths: list[Path]) -> None:
        """Put files written under ``dir`` (plots, tables) into the run's storage too (nothing to do locally)."""
        if self.source is not None:
            self.source.upload(self.dir, paths)

    def trials(self) -> list[Trial]:
        """Every trial in Ray's newest snapshot, in Ray's order, then those of the run's extensions
        (``search extend`` runs more trials in ``RUN_DIR/extend``, ``extend-2``, ...)."""
        states = sorted(self.dir.glob(STATE_PATTERN))
        if not states:
            raise UserError(f"{self.dir}: no trials recorded yet (no experiment_state*.json); has the sweep started?")
        snapshot = _snapshot(states[-1]) or _snapshot(self.dir / GOOD_STATE)
        if snapshot is None:
            raise RunError(f"{states[-1]}: damaged (the disk was full when Ray wrote it?), and no good copy")
        trials = [_trial(self.dir, state) for state in snapshot["trial_data"]]
        for extension in self.extensions():
            if any(extension.glob(STATE_PATTERN)):
                trials += read_run(extension).trials()
        return trials

    def extensions(self) -> list[Path]:
        """The run directories of ``search extend`` inside this one, oldest first."""
        found = [p.parent for p in self.dir.glob(f"{EXTENSION}*/{SPEC_FILE}")]
        return sorted(found, key=lambda p: int(p.name.rpartition("-")[2]) if "-" in p.name else 1)

    def trial(self, trial_id: str) -> Trial | None:
        return next((t for t in self.trials() if t.trial_id == trial_id), None)


def _lazy(relative: str) -> bool:
    """A checkpoint's file: a remote run's mirror fetches it only when asked (:meth:`Run.local`)."""
    return any(part.startswith("checkpoint_") for part in relative.split("/")[:-1])


def mirror_run(remote: Remote) -> Path:
    """Download what readers of a remote run need into its local mirror (``search.storage.mirror_dir``)."""
    local = mirror_dir(remote)
    try:
        if not remote.child(SPEC_FILE).exists():
            raise SpecError(str(remote), "", f"not a run directory of ours: {SPEC_FILE} is missing")
        remote.mirror(local, lazy=_lazy)
    except OSError as error:  # pyarrow's errors (no such bucket, no credentials, unreachable endpoint) are OSErrors
        raise RunError(f"{remote}: {' '.join(str(error).split())}") from None
    return local


def read_run(run_dir: str | Path | Remote) -> Run:
    """The run in ``run_dir``, a path or a storage URI (a :class:`SpecError` when it is not one of ours).

    A remote run is first mirrored on this machine (incrementally: only new and changed files are downloaded)."""
    source = Remote.parse(run_dir) if is_uri(run_dir) else run_dir if isinstance(run_dir, Remote) else None
    local = mirror_run(source) if source is not None else Path(run_dir).resolve()
    record = _record(local)
    spec = validate(record["spec"], record["file"])
    if source is not None and spec.storage_options:
        source = Remote.parse(source.uri, {**dict(spec.storage_options), **dict(source.options)})
    return Run(dir=local, spec=spec, cuts_trials=bool(record.get("cuts_trials", False)), source=source)


__all__ = [
    "MIN_FREE",
    "SPEC_FILE",
    "Run",
    "Trial",
    "check_resumable",
    "claim_run_dir",
    "disk_full",
    "keep_good_state",
    "load_saved_spec",
    "mirror_run",
    "read_lines",
    "read_run",
    "save_spec",
    "unique_run_dir",
]
