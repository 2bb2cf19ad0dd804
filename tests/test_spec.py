"""The spec layer: every bad spec gives its one-line error; layering, --set and --search behave."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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


# ---------------------------------------------------------------- W&B sweep files as users write them

WANDB_SWEEPS = sorted((HERE / "wandb_sweeps").glob("*.yaml"))


def test_enough_wandb_sweeps():
    assert len(WANDB_SWEEPS) >= 8


@pytest.mark.parametrize("path", WANDB_SWEEPS, ids=[p.stem for p in WANDB_SWEEPS])
def test_wandb_sweep_file_passes_search_validate(path: Path, capsys):
    from search.__main__ import main

    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: valid" in capsys.readouterr().out


def test_wandb_sweeps_read_as_wandb_reads_them():
    """1e-5 is a number, dotted names nest, W&B's own keys are kept, a grid or random sweep may omit metric."""
    sweeps = {p.stem: load_spec(p) for p in WANDB_SWEEPS}
    lr = {p.name: p.dist for p in sweeps["hf_glue_bayes"].parameters}["learning_rate"]
    assert (lr.min, lr.max) == (1e-5, 1e-3)
    no_metric = sweeps["random_no_metric"]
    assert no_metric.metric is None and no_metric.run_cap == 20
    dists = {p.name: p.dist for p in no_metric.parameters}
    assert dists["adam_eps"].values == (1e-8, 1e-6) and dists["label_smoothing"].value == 0.1
    grid = sweeps["grid_dotted_names"]
    assert grid.metric is None
    assert [p.path for p in grid.parameters][:2] == [("optimizer", "lr"), ("optimizer", "weight_decay")]
    assert grid.extra["command"] == ["${env}", "python", "${program}", "${args_no_hyphens}"]
    assert sweeps["target_stop"].metric.target == 0.05 and sweeps["target_stop"].metric.mode == "min"
    assert sweeps["hyperband_strict"].scheduler.options == {"reduction_factor": 3, "max_t": 27, "grace_period": 3}
    assert set(sweeps["launch_job"].extra) == {"apiVersion", "kind", "description", "job", "entity", "project"}
    assert sweeps["image_uri_local_controller"].extra["controller"] == {"type": "local"}
    nested = {p.name for p in sweeps["nested_parameters"].parameters}
    assert {"optimizer.lr", "lr_scheduler.warmup_steps", "encoder.dropout"} <= nested


def test_numbers_without_a_dot_are_numbers_everywhere_but_quoted_strings_stay(tmp_path: Path):
    path = write(
        tmp_path,
        "s.yaml",
        "method: random\nrun_cap: 1e1\nmetric: {name: loss, target: 1e-2}\n"
        "early_terminate: {type: hyperband, min_iter: 2e0, eta: 3e0}\n"
        "parameters:\n  lr: {distribution: log_uniform_values, min: 1e-5, max: 1E-3}\n"
        "  eps: {values: [1e-8, '1e-6']}\n  wd: {value: -.5}\n  n: {distribution: int_uniform, min: 1e0, max: 1e1}\n"
        "  flag: {values: [yes, no]}\n"
        "settings: {lr: 3e-4, tag: v1e3}\n",
    )
    spec = load_spec(path)
    assert spec.run_cap == 10 and isinstance(spec.run_cap, int)
    assert spec.metric.target == 0.01
    assert spec.scheduler.options == {"reduction_factor": 3.0, "grace_period": 2}
    dists = {p.name: p.dist for p in spec.parameters}
    assert (dists["lr"].min, dists["lr"].max) == (1e-5, 1e-3)
    assert dists["eps"].values == (1e-8, "1e-6")  # quoting says "a string", in YAML 1.2 as in 1.1
    assert dists["wd"].value == -0.5
    assert (dists["n"].min, dists["n"].max) == (1, 10) and dists["n"].grid_values()[-1] == 10
    assert dists["flag"].values == (True, False)  # YAML 1.1's booleans stay
    assert spec.settings == {"lr": 3e-4, "tag": "v1e3"}


def test_set_and_search_read_numbers_like_the_file(tmp_path: Path):
    path = write(tmp_path, "s.yaml", "method: grid\nparameters: {a: {values: [1, 2]}}\n")
    spec = load_spec(path, overrides=["settings.lr=1e-5", "parameters.b.value=2e-3"])
    assert spec.settings == {"lr": 1e-5} and {p.name: p.dist for p in spec.parameters}["b"].value == 2e-3
    assert parse_search_grid("lr=1e-5:3e-5", "f")["lr"]["values"] == [1e-5, 3e-5]


# A number of the property test: its value is int(m) * 10**e, written "{m}e{e}" (a string to YAML 1.1).
NUMBERS = st.tuples(st.integers(-999, 999), st.integers(-6, 6))
POSITIVE = st.tuples(st.integers(1, 999), st.integers(-6, 6))
WHOLE = st.tuples(st.integers(1, 99), st.integers(0, 2))


class Written:
    """A number of the spec, as a number and as W&B users write it."""

    def __init__(self, m_e: tuple[int, int], whole: bool = False):
        self.text = f"{m_e[0]}e{m_e[1]}"
        self.value = int(float(self.text)) if whole else float(self.text)


def _render(tree, as_text: bool):
    if isinstance(tree, Written):
        return tree.text if as_text else tree.value
    if isinstance(tree, dict):
        return {k: _render(v, as_text) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_render(v, as_text) for v in tree]
    return tree


def _bounds(draw, numbers, whole: bool = False) -> tuple[Written, Written]:
    """Two numbers, the smaller first (a distribution's min and max)."""
    low, high = sorted((Written(draw(numbers), whole), Written(draw(numbers), whole)), key=lambda w: w.value)
    assume(low.value < high.value)
    return low, high


@st.composite
def numeric_specs(draw) -> dict:
    """A random-method spec with a number in every numeric position W&B's schema has (and ours)."""
    (lo, hi), (plo, phi), (ilo, ihi) = _bounds(draw, NUMBERS), _bounds(draw, POSITIVE), _bounds(draw, WHOLE, True)
    n, p = (lambda: Written(draw(NUMBERS))), (lambda: Written(draw(POSITIVE)))
    return {
        "method": "random",
        "run_cap": Written(draw(WHOLE), whole=True),
        "seed": Written(draw(WHOLE), whole=True),
        "max_concurrent": Written(draw(WHOLE), whole=True),
        "metric": {"name": "loss", "goal": "minimize", "target": n()},
        "early_terminate": {"type": "hyperband", "min_iter": Written(draw(WHOLE), whole=True), "eta": Written((3, 0))},
        "resources": {"cpu": p()},
        "checkpoint": {"keep": Written(draw(WHOLE), whole=True)},
        "parameters": {
            "u": {"distribution": "uniform", "min": lo, "max": hi},
            "lu": {"distribution": "log_uniform_values", "min": plo, "max": phi},
            "qu": {"distribution": "q_uniform", "min": lo, "max": hi, "q": p()},
            "iu": {"distribution": "int_uniform", "min": ilo, "max": ihi},
            "nested": {"parameters": {"n": {"distribution": "q_normal", "mu": n(), "sigma": p(), "q": p()}}},
            "b": {"distribution": "q_beta", "a": p(), "b": p(), "q": p()},
            "c": {"values": [n(), n(), n()], "probabilities": [Written((25, -2)), Written((75, -2)), Written((0, 0))]},
            "k": {"value": n()},
            "dotted.v": {"values": [n()]},
        },
        "settings": {"lr": n()},
    }


@settings(max_examples=60, deadline=None)
@given(numeric_specs())
def test_numbers_written_without_a_dot_read_as_the_same_spec(tree: dict):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        specs = []
        for as_text in (False, True):
            text = yaml.safe_dump(_render(tree, as_text), sort_keys=False)
            if as_text:
                assert "'" not in text  # every number written plain, as a user writes it: 1e-5, not '1e-5'
            path = Path(tmp) / ("text" if as_text else "numbers") / "sweep.yaml"
            path.parent.mkdir()
            path.write_text(text)
            specs.append(replace(load_spec(path), file="sweep.yaml"))
        assert specs[0] == specs[1]
        assert isinstance(specs[1].run_cap, int) and isinstance(specs[1].metric.target, float)


def test_dotted_names_reach_the_trainable_nested_like_nested_parameters(tmp_path: Path):
    from search.spec import trial_config

    dotted = write(
        tmp_path,
        "dotted.yaml",
        "method: grid\nparameters:\n  optimizer.lr: {values: [0.1]}\n  optimizer.name: {value: adam}\n"
        "  trainer.max-epochs: {value: 3}\n",
    )
    nested = write(
        tmp_path,
        "nested.yaml",
        "method: grid\nparameters:\n  optimizer: {parameters: {lr: {values: [0.1]}, name: {value: adam}}}\n"
        "  trainer: {parameters: {max-epochs: {value: 3}}}\n",
    )
    a, b = load_spec(dotted), load_spec(nested)
    assert a.parameters == b.parameters
    config = {"optimizer": {"lr": 0.1, "name": "adam"}, "trainer": {"max-epochs": 3}}
    assert trial_config(config, a.parameters) == config


def test_a_condition_may_name_a_dotted_parameter(tmp_path: Path):
    path = write(
        tmp_path,
        "s.yaml",
        "method: grid\nparameters:\n  optimizer.name: {values: [adam, sgd]}\n"
        "  optimizer.momentum: {values: [0.9], when: {optimizer.name: sgd}}\n",
    )
    (momentum,) = [p for p in load_spec(path).parameters if p.when]
    assert momentum.when == ((("optimizer", "name"), ("sgd",)),)


def test_wandb_launch_scheduler_is_explained_not_ignored(tmp_path: Path):
    path = write(
        tmp_path,
        "s.yaml",
        "method: random\nparameters: {x: {values: [1]}}\n"
        "scheduler: {job: 'wandb/sweep-jobs/job-optuna-sweep-scheduler:latest', resource: local-container}\n",
    )
    with pytest.raises(SpecError, match=r"scheduler: W&B's own scheduler .* scheduler: is Ray Tune's trial scheduler"):
        load_spec(path)


def test_a_space_file_may_hold_wandbs_own_keys(tmp_path: Path):
    write(
        tmp_path,
        "space.yaml",
        "apiVersion: v1\nkind: sweep\njob: j:latest\nmethod: grid\nparameters: {x: {values: [1]}}\n",
    )
    spec = load_spec(write(tmp_path, "e.yaml", "space: space.yaml\n"))
    assert spec.method == "grid" and spec.extra == {}  # the space file's W&B keys are its own, not the sweep's


def test_early_terminate_strict_is_accepted_and_asha_compares_at_the_rung(tmp_path: Path):
    base = "metric: {name: loss}\nparameters: {x: {values: [1]}}\nearly_terminate: {type: hyperband, min_iter: 2"
    strict = load_spec(write(tmp_path, "a.yaml", base + ", strict: true}\n"))
    loose = load_spec(write(tmp_path, "b.yaml", base + ", strict: false}\n"))
    assert strict.scheduler == loose.scheduler == load_spec(write(tmp_path, "c.yaml", base + "}\n")).scheduler


def test_metric_target_impute_and_impute_while_running_are_read(tmp_path: Path):
    path = write(
        tmp_path,
        "s.yaml",
        "method: bayes\nparameters: {x: {min: 0.0, max: 1.0}}\n"
        "metric: {name: acc, goal: maximize, target: 0.95, impute: best, impute_while_running: 'false'}\n",
    )
    assert load_spec(path).metric.target == 0.95
    assert load_spec(path, overrides=["metric.impute_while_running=false"]).metric.name == "acc"


# ---------------------------------------------------------------- a metric from the trainable, and metric.target


def _trainable_module(tmp_path: Path, name: str, declared: str) -> str:
    """A user's trainable module ``name`` in tmp_path (imported by module:function, without Ray)."""
    (tmp_path / f"{name}.py").write_text(f"{declared}\n\ndef train(config):\n    pass\n")
    return f"{name}:train"


def test_a_sweep_without_metric_ranks_by_the_trainables_primary_metric(tmp_path: Path):
    from search.tune.registry import complete_metric

    trainable = _trainable_module(
        tmp_path, "with_primary_metric", 'PRIMARY_METRIC = {"name": "f1", "goal": "maximize"}'
    )
    path = write(tmp_path, "s.yaml", f"method: grid\ntrainable: {trainable}\nparameters: {{x: {{values: [1, 2]}}}}\n")
    spec = load_spec(path)
    assert spec.metric is None
    check_spec(spec)  # the trainable declares one: nothing to ask
    complete = complete_metric(spec)
    assert (complete.metric.name, complete.metric.mode) == ("f1", "max")
    assert complete.parameters == spec.parameters and complete.raw["metric"] == {"name": "f1", "goal": "maximize"}
    # the spec saved with a run (its raw) reads back with the metric, without the trainable (rundir.read_run)
    from search.spec import validate

    assert validate(yaml.safe_load(yaml.safe_dump(dict(complete.raw))), str(path)).metric == complete.metric
    assert complete_metric(complete) is complete


def test_a_sweep_without_metric_whose_trainable_names_none_asks_for_one(tmp_path: Path):
    trainable = _trainable_module(tmp_path, "without_primary_metric", "STEPS = 3")
    path = write(tmp_path, "s.yaml", f"method: random\ntrainable: {trainable}\nparameters: {{x: {{values: [1]}}}}\n")
    with pytest.raises(SpecError, match=r"s.yaml: metric: missing, and trainable 'without_primary_metric:train' decl"):
        check_spec(load_spec(path))


def test_the_builtin_trainables_rank_by_bleu():
    from search.trainables import primary_metric

    for name in ("finetune", "decode"):
        assert primary_metric(name, REPO, "s.yaml") == {"name": "bleu", "goal": "maximize"}


def test_describe_names_the_metric_a_run_will_rank_by(tmp_path: Path):
    from search.tune.describe import describe_spec

    trainable = _trainable_module(
        tmp_path, "described_trainable", 'PRIMARY_METRIC = {"name": "f1", "goal": "maximize"}'
    )
    path = write(tmp_path, "s.yaml", "method: grid\nparameters: {x: {values: [1, 2]}}\n")
    assert "metric: none yet" in describe_spec(load_spec(path))
    with_trainable = load_spec(path, overrides=[f"trainable={trainable}"])
    assert "metric: f1 (max, described_trainable:train's PRIMARY_METRIC)" in describe_spec(with_trainable)
    target = load_spec(path, overrides=["metric.name=loss", "metric.target=1e-3"])
    assert "metric: loss (min, the sweep stops once a trial reaches 0.001)" in describe_spec(target)


@pytest.mark.parametrize(
    "mode, target, reports, stopped_at",
    [
        ("max", 30.0, [10.0, 29.9, 30.0, 31.0], 2),
        ("min", 0.1, [1.0, 0.5, 0.1], 2),
        ("max", 30.0, [None, float("nan"), True, "31"], None),  # not a number: never reached
    ],
)
def test_metric_target_stops_the_sweep_once_a_trial_reaches_it(mode, target, reports, stopped_at):
    from search.tune.registry import MetricTarget

    stop = MetricTarget("m", mode, target)
    stops = [stop(f"t{i}", {"m": v}) for i, v in enumerate(reports)]
    first = stops.index(True) if True in stops else None
    assert first == stopped_at and stop.stop_all() is (stopped_at is not None)
    assert stop.reached_by == (None if stopped_at is None else f"t{stopped_at}")


def test_build_stopper_only_with_a_target(tmp_path: Path):
    from search.tune.registry import build_stopper

    path = write(tmp_path, "s.yaml", "method: grid\nmetric: {name: acc}\nparameters: {x: {values: [1]}}\n")
    assert build_stopper(load_spec(path)) is None
    assert build_stopper(load_spec(write(tmp_path, "n.yaml", "method: grid\nparameters: {x: {values: [1]}}\n"))) is None
