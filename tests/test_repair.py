"""A snapshot that names checkpoints gone from disk is made to match the disk before ``Tuner.restore``
(no Ray session: Ray's checkpoint manager is only pickled and unpickled)."""

import json

import pytest
from ray import cloudpickle
from ray.train import CheckpointConfig
from ray.train._internal.checkpoint_manager import _CheckpointManager, _TrainingResult
from ray.tune import Checkpoint

from search.tune.repair import match_the_disk


def _trial(status: str, logdir: str, reported: int) -> list[str]:
    """One ``trial_data`` entry: ``reported`` checkpoints registered at a place the run no longer lives."""
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=3))
    for i in range(reported):
        checkpoint = Checkpoint(f"/where/the/run/first/lived/{logdir}/checkpoint_{i:06d}")
        manager.register_checkpoint(_TrainingResult(checkpoint, {"training_iteration": i + 1}))
    pickled = {"_type": "CLOUDPICKLE_FALLBACK", "value": cloudpickle.dumps(manager).hex()}
    errors = ("error.txt", "error.pkl") if status == "ERROR" else (None, None)
    meta = {"checkpoint_manager": pickled, "error_filename": errors[0], "pickled_error_filename": errors[1]}
    return [json.dumps({"status": status, "relative_logdir": logdir}), json.dumps(meta)]


def _state(run_dir, index: int) -> list[str]:
    return json.loads(next(run_dir.glob("experiment_state-*.json")).read_text())["trial_data"][index]


def _manager(run_dir, index: int) -> _CheckpointManager:
    return cloudpickle.loads(bytes.fromhex(json.loads(_state(run_dir, index)[1])["checkpoint_manager"]["value"]))


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
    assert match_the_disk(run_dir) == ["t0: checkpoint_000002 is gone; the trial continues from checkpoint_000001"]
    manager = _manager(run_dir, 0)
    assert _names(manager._checkpoint_results) == ["checkpoint_000000", "checkpoint_000001"]
    assert manager._latest_checkpoint_result is manager._checkpoint_results[1]  # one object, as Ray keeps it


def test_a_trial_with_no_checkpoint_left_starts_over(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("PAUSED", 3, [])})
    assert match_the_disk(run_dir) == ["t0: checkpoint_000002 is gone; the trial starts over"]
    manager = _manager(run_dir, 0)
    assert manager._latest_checkpoint_result is None and manager._checkpoint_results == []


def test_older_lost_checkpoints_are_forgotten_quietly_and_finished_trials_are_left_alone(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("RUNNING", 3, [1, 2]), "t1": ("TERMINATED", 3, [])})
    assert match_the_disk(run_dir) == []
    assert _names(_manager(run_dir, 0)._checkpoint_results) == ["checkpoint_000001", "checkpoint_000002"]
    assert len(_manager(run_dir, 1)._checkpoint_results) == 3


def test_a_snapshot_that_matches_its_disk_is_not_rewritten(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("RUNNING", 3, [0, 1, 2]), "t1": ("PENDING", 0, [])})
    (state,) = run_dir.glob("experiment_state-*.json")
    before = state.read_bytes()
    assert match_the_disk(run_dir) == []
    assert state.read_bytes() == before


@pytest.mark.parametrize(
    "error_txt, error_pkl",
    [("", None), ("Traceback ...\nOSError: [Errno 28] No space left on device: '/runs/x'\n", None),
     ("Traceback ...\nRuntimeError: boom\n", b"\x80\x05\x95")],  # a pickle cut short
    ids=["empty error.txt", "errno 28", "cut error.pkl"],
)  # fmt: skip
def test_a_trial_that_errored_on_the_full_disk_runs_again(tmp_path, error_txt, error_pkl):
    run_dir = _run(tmp_path, {"t0": ("ERROR", 3, [0, 1, 2])})
    (run_dir / "t0" / "error.txt").write_text(error_txt)
    if error_pkl is not None:
        (run_dir / "t0" / "error.pkl").write_bytes(error_pkl)
    assert match_the_disk(run_dir) == ["t0: errored on the full disk; it runs again"]
    info, meta = (json.loads(part) for part in _state(run_dir, 0))
    assert (info["status"], meta["error_filename"], meta["pickled_error_filename"]) == ("PENDING", None, None)


def test_a_trial_with_an_error_of_its_own_stays_errored(tmp_path):
    run_dir = _run(tmp_path, {"t0": ("ERROR", 3, [0])})
    (run_dir / "t0" / "error.txt").write_text("Traceback ...\nRuntimeError: x=2 is broken on purpose\n")
    (run_dir / "t0" / "error.pkl").write_bytes(cloudpickle.dumps(RuntimeError("x=2 is broken on purpose")))
    (state,) = run_dir.glob("experiment_state-*.json")
    before = state.read_bytes()
    assert match_the_disk(run_dir) == [] and state.read_bytes() == before
