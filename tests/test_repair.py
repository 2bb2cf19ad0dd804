"""A snapshot that names checkpoints gone from disk is made to match the disk before ``Tuner.restore``
(no Ray session: Ray's checkpoint manager is only pickled and unpickled)."""

import json

from ray import cloudpickle
from ray.train import CheckpointConfig
from ray.train._internal.checkpoint_manager import _CheckpointManager, _TrainingResult
from ray.tune import Checkpoint

from search.tune.repair import forget_lost_checkpoints


def _trial(status: str, logdir: str, reported: int) -> list[str]:
    """One ``trial_data`` entry: ``reported`` checkpoints registered at a place the run no longer lives."""
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=3))
    for i in range(reported):
        checkpoint = Checkpoint(f"/where/the/run/first/lived/{logdir}/checkpoint_{i:06d}")
        manager.register_checkpoint(_TrainingResult(checkpoint, {"training_iteration": i + 1}))
    meta = {"checkpoint_manager": {"_type": "CLOUDPICKLE_FALLBACK", "value": cloudpickle.dumps(manager).hex()}}
    return [json.dumps({"status": status, "relative_logdir": logdir}), json.dumps(meta)]


def _manager(run_dir, index: int) -> _CheckpointManager:
    state = json.loads(next(run_dir.glob("experiment_state-*.json")).read_text())["trial_data"][index]
    return cloudpickle.loads(bytes.fromhex(json.loads(state[1])["checkpoint_manager"]["value"]))


def _run(tmp_path, trials: dict[str, tuple[str, int, list[int]]]):
    """A run directory; ``trials``: logdir -> (status, checkpoints registered, the indices of those still on disk)."""
    for logdir, (_, _, on_disk) in trials.items():
        (tmp_path / logdir).mkdir()
        for i in on_disk:
            (tmp_path / logdir / f"checkpoint_{i:06d}").mkdir()
    data = [_trial(status, logdir, reported) for logdir, (status, reported, _) in trials.items()]
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": data}))
    return tmp_path


def _names(results) -> list[str]:
    return [r.checkpoint.path.rsplit("/", 1)[1] for r in results]


def test_a_lost_restore_point_becomes_the_newest_checkpoint_still_there(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("RUNNING", 3, [0, 1])})
    assert forget_lost_checkpoints(run_dir) == [
        "t0: checkpoint_000002 is gone; the trial continues from checkpoint_000001"
    ]
    manager = _manager(run_dir, 0)
    assert _names(manager._checkpoint_results) == ["checkpoint_000000", "checkpoint_000001"]
    assert manager._latest_checkpoint_result is manager._checkpoint_results[1]  # one object, as Ray keeps it


def test_a_trial_with_no_checkpoint_left_starts_over(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("PAUSED", 3, [])})
    assert forget_lost_checkpoints(run_dir) == ["t0: checkpoint_000002 is gone; the trial starts over"]
    manager = _manager(run_dir, 0)
    assert manager._latest_checkpoint_result is None and manager._checkpoint_results == []


def test_older_lost_checkpoints_are_forgotten_quietly_and_finished_trials_are_left_alone(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("RUNNING", 3, [1, 2]), "t1": ("TERMINATED", 3, [])})
    assert forget_lost_checkpoints(run_dir) == []
    assert _names(_manager(run_dir, 0)._checkpoint_results) == ["checkpoint_000001", "checkpoint_000002"]
    assert len(_manager(run_dir, 1)._checkpoint_results) == 3


def test_a_snapshot_that_matches_its_disk_is_not_rewritten(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("RUNNING", 3, [0, 1, 2]), "t1": ("PENDING", 0, [])})
    (state,) = run_dir.glob("experiment_state-*.json")
    before = state.read_bytes()
    assert forget_lost_checkpoints(run_dir) == []
    assert state.read_bytes() == before
