"""End to end through Ray Tune: grid with conditions, bayes + ASHA, PBT, errored trials, rank formats, resume."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from search.report import format_ranking, rank
from search.rundir import load_saved_spec, read_run

pytestmark = pytest.mark.ray


def test_grid_with_conditions_runs_and_ranks(run_sweep, tmp_path):
    _, run_dir = run_sweep(
        """
method: grid
metric: {name: score, goal: maximize}
trainable: TOY:quadratic
parameters:
  x: {values: [1, 3, 4]}
  mode: {values: [a, b]}
  w: {values: [10, 20], when: {mode: b}}
  opt: {parameters: {offset: {value: 1}}}
settings: {steps: 2}
"""
    )
    ranking = rank(run_dir)
    assert len(ranking.rows) == 3 * 3
    best = ranking.rows[0]
    assert best.params["x"] == 3 and best.value == pytest.approx(1.01)
    assert all(("w" in r.params) == (r.params["mode"] == "b") for r in ranking.rows)
    assert all(r.status == "TERMINATED" and r.training_iteration == 2 for r in ranking.rows)
    # the trainable never saw the internal grid key nor a switched-off parameter
    for r in rank(run_dir, columns=("seen_keys",)).rows:
        seen = r.columns["seen_keys"].split(",")
        assert "_grid" not in seen and ("w" in seen) == (r.params["mode"] == "b")
    # with actors reused between trials, each trial's artifact still lands in its own trial directory
    for r in ranking.rows:
        (trial_dir,) = run_dir.glob(f"*{r.trial_id}*")
        assert (trial_dir / "artifact.txt").read_text() == str(r.params["x"])
    md = format_ranking(ranking, "md").splitlines()
    assert md[2] == "| score | x | mode | w | trial_id | status | training_iteration |"
    rows = list(csv.DictReader(io.StringIO(format_ranking(ranking, "csv"))))
    assert len(rows) == 9 and set(rows[0]) == {"score", "x", "mode", "w", "trial_id", "status", "training_iteration"}
    data = json.loads(format_ranking(ranking, "json"))
    assert data["metric"] == "score" and data["rows"][0]["params"]["x"] == 3
    assert "score" in format_ranking(ranking, "table")
    assert (run_dir / "search_spec.yaml").is_file()
    # the run keeps the spec it ran, so that rank, plot and export need not find the YAML file again
    assert load_saved_spec(run_dir).raw == yaml.safe_load((tmp_path / "sweep.yaml").read_text())


def test_bayes_with_hyperband_early_terminate(run_sweep):
    results, run_dir = run_sweep(
        """
method: bayes
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
metric: {name: score, goal: maximize}
trainable: TOY:quadratic
run_cap: 6
seed: 1
parameters:
  x: {distribution: q_uniform, min: 0, max: 6, q: 1}
settings: {steps: 4}
"""
    )
    assert len(results) == 6 and not results.errors
    ranking = rank(run_dir, scope="best")
    assert all(r.value is not None for r in ranking.rows)
    assert min(r.training_iteration for r in ranking.rows) < 4  # ASHA stopped someone early


def test_pbt_exploits_from_checkpoints(run_sweep):
    results, run_dir = run_sweep(
        """
method: random
scheduler: {type: pbt, perturbation_interval: 2, quantile_fraction: 0.5, resample_probability: 1.0}
metric: {name: value, goal: maximize}
trainable: TOY:counter
run_cap: 2
seed: 0
parameters:
  lr: {values: [0.0, 1.0]}
settings: {steps: 6}
"""
    )
    assert not results.errors
    values = sorted(r.metrics["value"] for r in results)
    # without exploitation the lr=0 trial would end at 0; PBT copied the leader's state into it
    assert values[0] > 0
    # every report is in the trial's result.json, also those before an exploit restarted the trial (Ray's own
    # result.json writer truncated it on local storage)
    for trial in read_run(run_dir).trials():
        iterations = [r["training_iteration"] for r in trial.history()]
        assert iterations == list(range(1, trial.last_result["training_iteration"] + 1))


def test_errored_trials_are_listed_after_ranked_ones(run_sweep):
    _, run_dir = run_sweep(
        """
method: grid
metric: {name: score, goal: maximize}
trainable: TOY:broken
parameters: {x: {values: [1, 2, 3]}}
"""
    )
    ranking = rank(run_dir)
    assert [r.status for r in ranking.rows] == ["TERMINATED", "TERMINATED", "ERROR"]
    assert ranking.rows[-1].params["x"] == 2 and "broken on purpose" in ranking.rows[-1].error
    assert ranking.best.params["x"] == 3


def test_the_cli_leaves_a_ray_it_did_not_start_running(run_sweep, capsys):
    """`search run` ranks while it shuts down the Ray it started; a Ray someone else started (this session's) stays."""
    import ray

    from search.__main__ import _finish

    _, run_dir = run_sweep(
        """
method: grid
metric: {name: score, goal: maximize}
trainable: TOY:quadratic
parameters: {x: {values: [1, 2]}}
"""
    )
    assert _finish(run_dir, "table") == 0
    assert "run directory:" in capsys.readouterr().out
    assert ray.is_initialized()


@pytest.mark.slow
def test_sigkill_then_resume_keeps_finished_trials(write_spec, tmp_path):
    """A sweep killed with SIGKILL continues with `search resume`; trials that had finished are not run again."""
    path = write_spec(
        """
method: grid
metric: {name: score, goal: maximize}
trainable: TOY:quadratic
max_concurrent: 1
parameters: {x: {values: [0, 1, 2, 3, 4, 5]}}
settings: {steps: 2, sleep: 1.0}
"""
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "search", "run", str(path), "--storage", str(storage)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    finished = 0
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        finished += "finished:" in line
        if finished >= 2 or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished >= 2
    run_dir = storage / "sweep"
    before = {r.trial_id: r for r in rank(run_dir).rows if r.status == "TERMINATED"}
    assert 1 <= len(before) < 6
    done_dirs = {t: next(run_dir.glob(f"*{t}*")) for t in before}
    stamps = {t: (d / "result.json").stat().st_mtime for t, d in done_dirs.items()}
    proc = subprocess.run(
        [sys.executable, "-m", "search", "resume", str(run_dir)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = rank(run_dir).rows
    assert len(after) == 6 and all(r.status == "TERMINATED" for r in after)
    assert {t: (done_dirs[t] / "result.json").stat().st_mtime for t in before} == stamps


def test_a_grid_without_metric_ranks_by_the_trainables_primary_metric(run_sweep):
    """W&B's grid and random need no metric: the run ranks by PRIMARY_METRIC, saved with the spec for `rank`."""
    from search.report import rank
    from search.rundir import read_run

    _, run_dir = run_sweep("method: grid\ntrainable: TOY:quadratic\nparameters: {x: {values: [1, 3, 4]}}\n")
    ranking = rank(run_dir, bootstrap=0)
    assert (ranking.metric, ranking.mode, ranking.best.params) == ("score", "max", {"x": 3})
    assert read_run(run_dir).spec.metric.name == "score"
