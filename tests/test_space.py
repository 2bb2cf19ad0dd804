"""Every W&B distribution round-trips: YAML -> Param -> Ray domain and hyperopt expression with W&B's law."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hyperopt.pyll import stochastic
from ray import tune

from search.errors import SpecError
from search.spec import load_spec
from search.spec.params import DISTRIBUTIONS, effective_config, parse_parameters
from search.tune.space import (
    GRID_KEY,
    candidates,
    grid_combinations,
    hyperopt_domain,
    param_space,
    pbt_mutations,
    tune_domain,
)

# distribution -> (W&B spec, check of one sample)
CASES = {
    "constant": ({"value": 7}, lambda x: x == 7),
    "categorical": ({"values": ["a", "b"], "probabilities": [0.0, 1.0]}, lambda x: x == "b"),
    "int_uniform": ({"min": 2, "max": 4}, lambda x: x in (2, 3, 4) and float(x).is_integer()),
    "uniform": ({"min": 0.5, "max": 1.5}, lambda x: 0.5 <= x <= 1.5),
    "q_uniform": (
        {"min": 0.0, "max": 1.0, "q": 0.25},
        lambda x: 0 <= x <= 1 and abs(x / 0.25 - round(x / 0.25)) < 1e-9,
    ),
    "log_uniform_values": ({"min": 1e-4, "max": 1e-2}, lambda x: 1e-4 <= x <= 1e-2),
    "q_log_uniform_values": ({"min": 1, "max": 1000, "q": 1}, lambda x: 1 <= x <= 1000 and float(x).is_integer()),
    "log_uniform": ({"min": math.log(1e-3), "max": 0.0}, lambda x: 1e-3 - 1e-12 <= x <= 1.0),
    "q_log_uniform": ({"min": 0.0, "max": math.log(100), "q": 1}, lambda x: 1 <= x <= 100 and float(x).is_integer()),
    "inv_log_uniform_values": ({"min": 0.01, "max": 0.1}, lambda x: 0.01 <= x <= 0.1),
    "inv_log_uniform": ({"min": 0.0, "max": math.log(10)}, lambda x: 0.1 - 1e-12 <= x <= 1.0),
    "normal": ({"mu": 5.0, "sigma": 0.01}, lambda x: 4.9 < x < 5.1),
    "q_normal": ({"mu": 10.0, "sigma": 0.01, "q": 2}, lambda x: x == 10),
    "log_normal": ({"mu": 0.0, "sigma": 0.01}, lambda x: 0.95 < x < 1.05),
    "q_log_normal": ({"mu": math.log(20), "sigma": 0.001, "q": 5}, lambda x: x == 20),
    "beta": ({"a": 2.0, "b": 5.0}, lambda x: 0.0 <= x <= 1.0),
    "q_beta": ({"a": 1000, "b": 1000, "q": 0.25}, lambda x: x == 0.5),
}


def test_cases_cover_every_distribution():
    assert set(CASES) == set(DISTRIBUTIONS)


@pytest.mark.parametrize("dist", sorted(CASES))
def test_distribution_round_trip(dist):
    spec, ok = CASES[dist]
    method = "grid" if dist in ("constant",) else "random"
    (param,) = parse_parameters({"x": {"distribution": dist, **spec}}, "f.yaml", method)
    assert param.distribution == dist
    domain = tune_domain(param)
    rng = np.random.default_rng(0)
    samples = [domain.sample(random_state=rng) if hasattr(domain, "sample") else domain for _ in range(50)]
    assert all(ok(x) for x in samples), (dist, samples[:5])
    hp_expr = hyperopt_domain(param)
    hp_samples = [stochastic.sample(hp_expr, rng=np.random.default_rng(i)) for i in range(50)]
    assert all(ok(x) for x in hp_samples), (dist, hp_samples[:5])


def test_log_uniform_bounds_are_natural_logs_as_in_wandb():
    (p,) = parse_parameters({"lr": {"distribution": "log_uniform", "min": -9.2, "max": -2.3}}, "f", "random")
    lo, hi = candidates((p,))["lr"]
    assert lo == pytest.approx(math.exp(-9.2)) and hi == pytest.approx(math.exp(-2.3))


def test_inference_like_wandb():
    params = parse_parameters(
        {
            "a": {"value": 1},
            "b": {"values": [1]},
            "c": {"min": 1, "max": 3},
            "d": {"min": 0.1, "max": 1},
            "e": {"mu": 0, "sigma": 1},
        },
        "f",
        "random",
    )
    assert [p.distribution for p in params] == ["constant", "categorical", "int_uniform", "uniform", "normal"]


def test_conditional_grid_has_no_duplicates_and_drops_switched_off_params():
    params = parse_parameters(
        {
            "lr_schedule": {"values": ["constant", "linear"]},
            "warmup_steps": {"values": [0, 100, 500], "when": {"lr_schedule": "linear"}},
            "seed": {"values": [1, 2]},
        },
        "f",
        "grid",
    )
    combos = grid_combinations(params)
    assert len(combos) == 2 * (1 + 3)
    assert {"lr_schedule": "constant", "seed": 1} in combos
    space = param_space(params, "grid")
    assert list(space) == [GRID_KEY] and len(space[GRID_KEY]["grid_search"]) == 8
    cfg = {"lr_schedule": "constant", "warmup_steps": 100, "seed": 1}
    assert effective_config(cfg, params) == {"lr_schedule": "constant", "seed": 1}
    cfg["lr_schedule"] = "linear"
    assert effective_config(cfg, params) == cfg


def test_nested_parameters_become_nested_config():
    params = parse_parameters(
        {"opt": {"parameters": {"lr": {"values": [0.1, 0.2]}, "beta": {"value": 0.9}}}}, "f", "grid"
    )
    assert [p.name for p in params] == ["opt.lr", "opt.beta"]
    space = param_space(params, "grid")
    assert space["opt"]["beta"] == 0.9 and space["opt"]["lr"] == tune.grid_search([0.1, 0.2])


def test_pbt_mutations_derived_from_parameters():
    params = parse_parameters(
        {
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "bs": {"values": [16, 32]},
            "h": {"value": 8},
        },
        "f",
        "random",
    )
    muts = pbt_mutations(params)
    assert muts["bs"] == [16, 32] and "h" not in muts and hasattr(muts["lr"], "sample")


def test_pbt_is_synchronous_unless_the_spec_says_otherwise(tmp_path):
    """Asynchronous PBT livelocked when a donor could not get a CPU slot; synchronous PBT lets every member run."""
    from search.spec import load_spec
    from search.tune.registry import build_scheduler

    path = tmp_path / "pbt.yaml"
    path.write_text(
        "method: random\nmetric: {name: v, goal: maximize}\nrun_cap: 2\n"
        "scheduler: {type: pbt, perturbation_interval: 1}\nparameters: {lr: {values: [0.1, 0.2]}}\n"
    )
    assert build_scheduler(load_spec(path))._synch is True
    assert build_scheduler(load_spec(path, overrides=["scheduler.synch=false"]))._synch is False


@pytest.mark.parametrize("dist", ["beta", "q_beta"])
def test_beta_is_refused_by_grid_and_takes_wandbs_defaults(dist):
    with pytest.raises(
        SpecError, match=f"method grid needs a finite set of values, got continuous distribution {dist}"
    ):
        parse_parameters({"x": {"distribution": dist}}, "f.yaml", "grid")
    (param,) = parse_parameters({"x": {"distribution": dist}}, "f.yaml", "random")
    assert (param.dist.a, param.dist.b) == (1.0, 1.0)  # W&B's defaults: the uniform law on [0, 1]
    assert candidates((param,)) == {"x": (0.0, 1.0)}
    with pytest.raises(SpecError, match="parameters.x.a: must be > 0, got -1"):
        parse_parameters({"x": {"distribution": dist, "a": -1}}, "f.yaml", "random")


def test_beta_has_its_law_in_tune_and_hyperopt():
    """Mean a / (a + b) and variance ab / ((a + b)^2 (a + b + 1)) of beta(2, 5), from 2,000 draws of each side."""
    (param,) = parse_parameters({"x": {"distribution": "beta", "a": 2, "b": 5}}, "f.yaml", "bayes")
    rng = np.random.default_rng(0)
    ray_draws = np.array([tune_domain(param).sample(random_state=rng) for _ in range(2000)])
    hp_draws = np.array([stochastic.sample(hyperopt_domain(param), rng=np.random.default_rng(i)) for i in range(2000)])
    for draws in (ray_draws, hp_draws):
        assert draws.mean() == pytest.approx(2 / 7, abs=0.015)
        assert draws.var() == pytest.approx(10 / (49 * 8), rel=0.1)


def test_bayes_sweep_of_a_beta_parameter_runs_hyperopt(tmp_path):
    """HyperOptSearch takes the beta parameter's quantile expression and suggests values in [0, 1]."""
    from search.tune.registry import build_search_alg

    path = tmp_path / "s.yaml"
    path.write_text(
        "method: bayes\nmetric: {name: m, goal: maximize}\nrun_cap: 4\nseed: 0\n"
        "parameters: {x: {distribution: q_beta, a: 2, b: 2, q: 0.1}, y: {values: [1, 2]}}\n"
    )
    alg = build_search_alg(load_spec(path))
    suggested = [alg.suggest(f"t{i}") for i in range(4)]
    assert all(0.0 <= s["x"] <= 1.0 and abs(s["x"] * 10 - round(s["x"] * 10)) < 1e-9 for s in suggested)
    assert {s["y"] for s in suggested} <= {1, 2}


def _target_spec(tmp_path, target: str):
    path = tmp_path / "target.yaml"
    path.write_text(
        f"method: grid\nmetric: {{name: score, goal: maximize, target: {target}}}\n"
        "parameters: {x: {values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}}\n"
    )
    return load_spec(path)


def test_target_stopper_is_rays_own_stopper_and_pickles_by_name(tmp_path):
    """Ray takes it as an experiment stopper (a plain callable would lose stop_all), and restores it by name."""
    import pickle

    from ray import cloudpickle
    from ray.tune.experiment import Experiment
    from ray.tune.stopper import Stopper

    from search.tune import registry

    stopper = registry.build_stopper(_target_spec(tmp_path, "3e0"))
    assert isinstance(stopper, Stopper) and stopper.target == 3.0
    assert Experiment("target", run=lambda config: None, stop=stopper, storage_path=str(tmp_path)).stopper is stopper
    copy = pickle.loads(cloudpickle.dumps(stopper))
    assert type(copy) is registry.TargetStopper and copy.metric == "score"
    assert b"TargetStopper" in pickle.dumps(stopper)  # by reference: the class is found by name when Ray restores


@pytest.mark.ray
def test_target_stops_the_sweep_once_a_trial_reaches_it(ray_session, tmp_path):
    """A grid of 10 trials reporting score = x, one at a time: the sweep ends with the first trial that reaches 3."""
    from search.tune.registry import build_search_alg, build_stopper

    spec = _target_spec(tmp_path, "3")

    def report_x(config):
        tune.report({"score": config["x"]})

    results = tune.Tuner(
        report_x,
        param_space=param_space(spec.parameters, spec.method),
        tune_config=tune.TuneConfig(search_alg=build_search_alg(spec), max_concurrent_trials=1),
        run_config=tune.RunConfig(stop=build_stopper(spec), storage_path=str(tmp_path / "runs"), verbose=0),
    ).fit()
    scores = sorted(r.metrics["score"] for r in results if r.metrics and "score" in r.metrics)
    assert sum(s >= 3 for s in scores) == 1 and len(scores) < 10  # the first trial to reach it ran last
