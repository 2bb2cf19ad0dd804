"""Before ``Tuner.restore``: the snapshot of an unfinished run made to match the checkpoints still on disk.

A snapshot older than its trials (the newer ones did not fit on a full disk, or it was put back from the good copy)
can name checkpoints that Ray deleted after it, keeping only the best ``checkpoint.keep``: Ray's restore then fails
the trial ("Could not recover from checkpoint as it does not exist on storage anymore"). Ray records a trial's
checkpoint manager only as a pickle, so this unpickles Ray's own class (``search resume`` has Ray anyway).
"""

from __future__ import annotations

import json
from pathlib import Path

from search.files import atomic_write
from search.rundir import STATE_PATTERN


def forget_lost_checkpoints(run_dir: Path) -> list[str]:
    """Make the newest snapshot forget the checkpoints that are gone from its unfinished trials' directories: such a
    trial continues from its newest checkpoint still there, or starts over when none is. Returns one line per trial
    whose restore point changed."""
    states = sorted(run_dir.glob(STATE_PATTERN))
    if not states:
        return []
    snapshot = json.loads(states[-1].read_text(encoding="utf-8"))
    lines, dirty = [], False
    for state in snapshot["trial_data"]:
        info, meta = json.loads(state[0]), json.loads(state[1])
        if info.get("status") == "TERMINATED" or "value" not in (meta.get("checkpoint_manager") or {}):
            continue
        line = _forget_in(meta, run_dir / info["relative_logdir"])
        if line is not None:
            state[1], dirty = json.dumps(meta), True
            lines += [line] if line else []
    if dirty:
        atomic_write(states[-1], json.dumps(snapshot))
    return lines


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


__all__ = ["forget_lost_checkpoints"]
