"""The spec layer: every bad spec gives its one-line error; layering, --set and --search behave."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.errors import SpecError, UserError
from search.pipeline import is_pipeline, load_pipeline
from search.spec import load_spec, parse_search_grid
from search.tune import check_spec

HERE = Path(__file__).parent
BAD = sorted((HERE / "bad_specs").glob("*.yaml"))
REPO = HERE.parent


def expected_error(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path} must start with '# error: <message>'"
    return first.removeprefix("# error: ")


def test_enough_bad_specs():
    assert len(BAD) >= 25


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_message(path: Path, monkeypatch):
    monkeypatch.chdir(HERE)
    with pytest.raises(SpecError) as e:
        check_spec(load_spec(f"bad_specs/{path.name}"))
    message = str(e.value)
    assert "\n" not in message
    assert expected_error(path) in message
    assert message.startswith("bad_specs/") or message.startswith("../spaces/")


@pytest.mark.parametrize("name", ["min_ge_max", "unknown_trainable", "invalid_yaml"])
def test_cli_exit_code_one_line_no_run_dir(name: str, tmp_path: Path):
    storage = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "search", "run", str(HERE / "bad_specs" / f"{name}.yaml"), "--storage", str(storage)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert expected_error(HERE / "bad_specs" / f"{name}.yaml") in lines[0]
    assert not storage.exists()


def test_run_without_trainable_is_a_one_line_error(tmp_path: Path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text("program: train.py\nmetric: {name: acc, goal: maximize}\nparameters: {x: {values: [1, 2]}}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "search", "run", str(spec), "--storage", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "trainable: missing; running needs one, e.g. --set trainable=finetune" in proc.stderr
    assert not (tmp_path / "runs").exists()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_plain_wandb_sweep_validates_and_keeps_wandb_keys(tmp_path: Path):
    path = write(
        tmp_path,
        "sweep.yaml",
        """
program: train.py
project: p
entity: e
description: d
method: bayes
metric: {name: val_loss, goal: minimize}
parameters:
  learning_rate: {min: 0.0001, max: 0.1}
  optimizer: {values: [adam, sgd]}
  epochs: {value: 3}
early_terminate: {type: hyperband, min_iter: 3}
run_cap: 20
""",
    )
    spec = load_spec(path)
    assert spec.trainable is None and spec.run_cap == 20
    assert spec.extra == {"program": "train.py", "project": "p", "entity": "e", "description": "d"}
    assert spec.scheduler.type == "asha" and spec.scheduler.options == {"reduction_factor": 3, "grace_period": 3}
    kinds = {p.name: p.distribution for p in spec.parameters}
    assert kinds == {"learning_rate": "uniform", "optimizer": "categorical", "epochs": "constant"}


def test_space_file_smoke_test_set_and_search_layering(tmp_path: Path):
    write(
        tmp_path,
        "spaces/s.yaml",
        "method: random\nmetric: {name: bleu, goal: maximize}\n"
        "parameters: {a: {values: [1, 2]}, b: {min: 0.0, max: 1.0}}\n",
    )
    path = write(
        tmp_path,
        "exp/e.yaml",
        "space: ../spaces/s.yaml\nrun_cap: 8\nparameters: {b: {value: 0.5}}\n"
        "settings: {steps: 100, eval: 10}\nsmoke_test: {run_cap: 2, settings: {steps: 3}}\n",
    )
    spec = load_spec(path)
    assert {p.name: p.distribution for p in spec.parameters} == {"a": "categorical", "b": "constant"}
    assert spec.run_cap == 8 and spec.settings == {"steps": 100, "eval": 10}
    smoke = load_spec(path, smoke_test=True, overrides=["settings.eval=5", "seed=3"])
    assert smoke.run_cap == 2 and smoke.settings == {"steps": 3, "eval": 5} and smoke.seed == 3
    grid = load_spec(path, search="a=1:2:3 early_stopping=true:false:never")
    assert grid.method == "grid" and grid.run_cap is None
    assert {p.name: p.dist.values for p in grid.parameters} == {
        "a": (1, 2, 3),
        "early_stopping": (True, False, "never"),
    }


def test_set_is_validated_like_the_file(tmp_path: Path):
    path = write(tmp_path, "e.yaml", "metric: {name: bleu, goal: maximize}\nparameters: {a: {values: [1, 2]}}\n")
    with pytest.raises(SpecError, match=r"run_cap: must be >= 1, got -1"):
        load_spec(path, overrides=["run_cap=-1"])
    with pytest.raises(SpecError, match=r"--set: expected KEY.PATH=VALUE"):
        load_spec(path, overrides=["run_cap"])


def test_search_grid_syntax_of_run_eval_search():
    grid = parse_search_grid(
        "num_beams=5:8:11:15 length_penalty=0.6:0.7:0.8:0.9:1.0:1.1 early_stopping=true:false", "f"
    )
    assert grid["num_beams"]["values"] == [5, 8, 11, 15]
    assert grid["length_penalty"]["values"] == [0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    assert grid["early_stopping"]["values"] == [True, False]
    with pytest.raises(SpecError, match="expected NAME=V1:V2"):
        parse_search_grid("num_beams", "f")


@pytest.mark.parametrize(
    "path", sorted((REPO / "spaces").glob("*.yaml")) + sorted((REPO / "experiments").glob("*.yaml"))
)
def test_every_shipped_file_validates(path: Path):
    if is_pipeline(yaml.safe_load(path.read_text())):
        for smoke in (False, True):
            load_pipeline(path, smoke_test=smoke)
        return
    spec = load_spec(path)
    assert spec.parameters
    smoke = load_spec(path, smoke_test=True)
    assert smoke.metric == spec.metric


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "trainable: finetune\nparameters: {learning_rat: {values: [0.001]}}",
            "parameters.learning_rat: unknown finetune parameter; valid ones are learning_rate",
        ),
        (
            "trainable: finetune\nparameters: {learning_rate: {values: [0.001]}}\nsettings: {max_stepz: 10}",
            "settings.max_stepz: unknown setting; valid ones are max_steps",
        ),
        (
            "trainable: decode\nparameters: {num_beams: {values: [2]}}\nsettings: {batch_size: 0}",
            "settings.batch_size: must be a positive integer, got 0",
        ),
        (
            "trainable: finetune\nparameters: {learning_rate: {values: [0.001]}}\ndata: {corpus: bible-xx}",
            "data.corpus: unknown corpus 'bible-xx'",
        ),
        (
            "trainable: decode\nparameters: {num_beams: {values: [2]}}\nmodel: no/such/model",
            "model",
        ),
    ],
)
def test_run_checks_trainable_sections_before_writing(tmp_path: Path, body: str, message: str):
    from search.tune import plan

    path = tmp_path / "sweep.yaml"
    text = "method: grid\nmetric: {name: bleu, goal: maximize}\n" + body + "\n"
    if "model:" not in body:
        text += "model: {arch: bart, d_model: 32, layers: 1, heads: 2, ffn: 64, vocab_size: 400}\n"
    if "data:" not in body:
        text += "data: {corpus: bible-en-es}\n"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        plan(load_spec(path), storage=str(tmp_path / "runs"))
    assert message in str(e.value) and str(e.value).startswith(str(path))
    assert not (tmp_path / "runs").exists()
