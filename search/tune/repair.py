"""Before ``Tuner.restore``: the snapshot of an unfinished run made to match what a fault left on disk.

A trial that errored because the disk was full is a fault, not the trial's own error: it runs again on resume
(Ray's ``resume_errored`` would also run again the trials that are broken). Such a trial's error files are often
empty or cut short, and Ray's results reader fails on a cut ``error.pkl``.

A snapshot older than its trials (the newer ones did not fit on a full disk, or it was put back from the good copy)
can name checkpoints that Ray deleted after it, keeping only the best ``checkpoint.keep``: Ray's restore then fails
the trial ("Could not recover from checkpoint as it does not exist on storage anymore"). Ray records a trial's
checkpoint manager only as a pickle, so this unpickles Ray's own class (``search resume`` has Ray anyway).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from search.files import atomic_write
from search.rundir import STATE_PATTERN

FULL_DISK_MARKS = ("No space left on device", "rrno 28")  # in an error.txt: "[Errno 28]", "(errno 28)"


def match_the_disk(run_dir: Path) -> list[str]:
    """Make the newest snapshot match the disk: a trial that errored on the full disk is unfinished again, and an
    unfinished trial forgets the checkpoints gone from its directory (it continues from its newest checkpoint still
    there, or starts over when none is). Returns one line per trial that will run otherwise than recorded."""
    states = sorted(run_dir.glob(STATE_PATTERN))
    if not states:
        return []
    snapshot = json.loads(states[-1].read_text(encoding="utf-8"))
    lines, dirty = [], False
    for state in snapshot["trial_data"]:
        info, meta = json.loads(state[0]), json.loads(state[1])
        changed = _match_trial(info, meta, run_dir / info["relative_logdir"])
        if changed is not None:
            state[0], state[1], dirty = json.dumps(info), json.dumps(meta), True
            lines += changed
    if dirty:
        atomic_write(states[-1], json.dumps(snapshot))
    return lines


def _match_trial(info: dict, meta: dict, trial_dir: Path) -> list[str] | None:
    """Change one trial's recorded state in place: None when it already matches the disk, else what changed."""
    lines = []
    if info.get("status") == "ERROR" and _errored_on_the_disk(trial_dir):
        info["status"], meta["error_filename"], meta["pickled_error_filename"] = "PENDING", None, None
        lines.append(f"{trial_dir.name}: errored on the full disk; it runs again")
    if info.get("status") not in ("TERMINATED", "ERROR") and "value" in (meta.get("checkpoint_manager") or {}):
        forgot = _forget_in(meta, trial_dir)
        if forgot is not None:
            return lines + ([forgot] if forgot else [])
    return lines or None


def _errored_on_the_disk(trial_dir: Path) -> bool:
    """Whether a trial's error was the full disk: its ``error.txt`` says so, or its error files are empty or cut
    short (they were written on the full disk)."""
    from ray import cloudpickle

    text = (
        (trial_dir / "error.txt").read_text(encoding="utf-8", errors="replace")
        if (trial_dir / "error.txt").is_file()
        else ""
    )
    if not text.strip() or any(mark in text for mark in FULL_DISK_MARKS):
        return True
    try:
        cloudpickle.loads((trial_dir / "error.pkl").read_bytes())
    except (EOFError, pickle.UnpicklingError):
        return True
    except Exception:  # no file, or an exception of a module this process cannot import: not the disk's doing
        return False
    return False


def _forget_in(meta: dict, trial_dir: Path) -> str | None:
    """Drop the lost checkpoints from one trial's pickled checkpoint manager in ``meta``: None when none was lost,
    else a line saying where the trial continues ("" when its restore point is still there)."""
    from ray import cloudpickle

    manager = cloudpickle.loads(bytes.fromhex(meta["checkpoint_manager"]["value"]))

    def there(result) -> bool:  # by name in today's trial directory: Ray's paths are where the run first lived
        return (trial_dir / Path(result.checkpoint.path).name).is_dir()

    latest, kept = manager._latest_checkpoint_result, [r for r in manager._checkpoint_results if there(r)]
    if (latest is None or there(latest)) and len(kept) == len(manager._checkpoint_results):
        return None
    manager._checkpoint_results, line = kept, ""
    if latest is not None and not there(latest):
        newest = max(kept, key=lambda r: r.metrics.get("training_iteration", 0), default=None)
        manager._latest_checkpoint_result = newest
        since = f"continues from {Path(newest.checkpoint.path).name}" if newest else "starts over"
        line = f"{trial_dir.name}: {Path(latest.checkpoint.path).name} is gone; the trial {since}"
    meta["checkpoint_manager"] = {**meta["checkpoint_manager"], "value": cloudpickle.dumps(manager).hex()}
    return line


__all__ = ["match_the_disk"]
