"""`search extend`: more trials into a finished sweep, none of its trials run again, one table for old and new."""

from __future__ import annotations

import json

import pytest

from search.__main__ import main
from search.rundir import read_run


def _results(run_dir) -> dict[str, list[str]]:
    """Every trial's result.json lines, by trial id (a trial that ran again would have more)."""
    return {t.trial_id: (t.path / "result.json").read_text().splitlines() for t in read_run(run_dir).trials()}


def _rows(capsys, run_dir) -> list[dict]:
    assert main(["rank", str(run_dir), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["rows"]


def test_hyperopt_starts_from_the_finished_trials_as_its_own():
    """The known trials become finished hyperopt trials with Ray's sign of the loss, and none is proposed again."""
    from search.spec import validate
    from search.tune.registry import build_search_alg

    raw = {
        "method": "bayes", "metric": {"name": "score", "goal": "maximize"}, "run_cap": 3, "seed": 0,
        "parameters": {"x": {"min": 0.0, "max": 6.0}, "opt": {"values": ["a", "b"]}},
    }  # fmt: skip
    spec = validate(raw, "s.yaml")
    known = [({"x": 1.0, "opt": "b"}, -4.0), ({"x": 3.0, "opt": "a"}, 0.0)]
    alg = build_search_alg(spec, known)
    alg.set_search_properties("score", "max", {})
    trials = alg._hpopt_trials
    assert [t["result"] for t in trials.trials] == [{"loss": 4.0, "status": "ok"}, {"loss": -0.0, "status": "ok"}]
    assert [t["misc"]["vals"]["opt"] for t in trials.trials] == [[1], [0]]  # hp.choice records the index
    proposed = [alg.suggest(f"t{i}") for i in range(3)]
    assert all(p is not None and (p["x"], p["opt"]) not in ((1.0, "b"), (3.0, "a")) for p in proposed)


@pytest.mark.ray
def test_extend_a_finished_bayes_sweep(run_sweep, tmp_path, capsys):
    _, run_dir = run_sweep(
        """
method: bayes
metric: {name: score, goal: maximize}
trainable: TOY:quadratic
run_cap: 3
seed: 0
parameters: {x: {min: 0.0, max: 6.0}}
"""
    )
    before = _results(run_dir)
    old_rows = _rows(capsys, run_dir)
    assert main(["extend", str(run_dir), "--run-cap", "2"]) == 0
    capsys.readouterr()
    after = _results(run_dir)
    assert len(after) == 5 and {k: after[k] for k in before} == before  # no finished trial ran again
    rows = _rows(capsys, run_dir)
    assert len(rows) == 5 and {r["status"] for r in rows} == {"TERMINATED"}
    assert {r["trial_id"]: r["value"] for r in old_rows}.items() <= {r["trial_id"]: r["value"] for r in rows}.items()
    new = [r for r in rows if r["trial_id"] not in before]
    assert {r["params"]["x"] for r in new}.isdisjoint({r["params"]["x"] for r in old_rows})
    assert (run_dir / "extend" / "search_spec.yaml").is_file()


@pytest.mark.ray
def test_extend_a_grid_runs_only_its_new_combinations(run_sweep, tmp_path, capsys):
    _, run_dir = run_sweep(
        "method: grid\nmetric: {name: score, goal: maximize}\ntrainable: TOY:quadratic\n"
        "parameters: {x: {values: [1, 2]}}\n"
    )
    before = _results(run_dir)
    assert main(["extend", str(run_dir), "--set", "parameters.x={values: [1, 2, 3, 4]}"]) == 0
    capsys.readouterr()
    rows = _rows(capsys, run_dir)
    assert sorted(r["params"]["x"] for r in rows) == [1, 2, 3, 4]
    assert rows[0]["params"]["x"] == 3 and len(_results(run_dir)) == 4
    assert {k: _results(run_dir)[k] for k in before} == before
    assert main(["extend", str(run_dir)]) == 2  # nothing new to run: one line, nothing started
    assert "every combination of the grid has finished" in capsys.readouterr().err
    assert not (run_dir / "extend-2").exists()
