"""Validated parameters -> what Ray Tune and hyperopt take: ``param_space`` domains, a hyperopt space, PBT mutations.

- ``grid``: ``tune.grid_search`` per parameter; with conditional parameters, one grid over the valid combinations
  (so that a switched-off parameter does not multiply the grid with duplicates).
- ``random``: Ray's domains (``tune.uniform``, ``tune.loguniform``, ...), with samplers of our own for the W&B laws Ray
  lacks (log-normal, weighted categorical). Conditional parameters are sampled and dropped when their condition is false.
- ``bayes``: a native hyperopt space (``hp.loguniform``, ``hp.pchoice``, ...) handed to Ray's ``HyperOptSearch``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray import tune
from ray.tune.search.sample import Categorical, Float, Sampler

from search.params import Param, deep_merge, effective_config

GRID_KEY = "_grid"  # holds one combination of a conditional grid; runner/results merge it back into the config


class _LogNormal(Sampler):
    """exp(normal(mu, sigma)), as W&B's log_normal."""

    def __init__(self, mu: float, sigma: float):
        self.mu, self.sigma = mu, sigma

    def sample(self, domain, config=None, size=1, random_state=None):
        rng = random_state if random_state is not None else np.random
        x = np.exp(rng.normal(self.mu, self.sigma, size=size))
        return x if size > 1 else float(x[0])

    def __str__(self):
        return f"LogNormal({self.mu}, {self.sigma})"


class _Weighted(Sampler):
    """A categorical with W&B's ``probabilities``."""

    def __init__(self, probabilities: tuple[float, ...]):
        self.p = np.asarray(probabilities, dtype=float)

    def sample(self, domain, config=None, size=1, random_state=None):
        rng = random_state if random_state is not None else np.random
        idx = rng.choice(len(domain.categories), size=size, p=self.p)
        items = [domain.categories[int(i)] for i in np.atleast_1d(idx)]
        return items if size > 1 else items[0]

    def __str__(self):
        return f"Weighted{tuple(self.p.tolist())}"


def tune_domain(p: Param) -> Any:
    """One parameter as a Ray Tune domain (or a plain value for a constant)."""
    d = p.distribution
    if d == "constant":
        return p.value
    if d == "categorical":
        if p.probabilities is None:
            return tune.choice(list(p.values))
        dom = Categorical(list(p.values))
        dom.set_sampler(_Weighted(p.probabilities))  # set_sampler returns None
        return dom
    if d == "int_uniform":
        return tune.randint(int(p.min), int(p.max) + 1)  # Ray's upper bound is exclusive, W&B's inclusive
    if d == "uniform":
        return tune.uniform(p.min, p.max)
    if d == "q_uniform":
        return tune.quniform(p.min, p.max, p.q)
    if d in ("log_uniform_values", "inv_log_uniform_values"):
        # 1/X with log X uniform on [log 1/max, log 1/min] has exactly the log-uniform law on [min, max].
        return tune.loguniform(p.min, p.max)
    if d == "q_log_uniform_values":
        return tune.qloguniform(p.min, p.max, p.q)
    if d == "log_uniform":
        return tune.loguniform(math.exp(p.min), math.exp(p.max))
    if d == "q_log_uniform":
        return tune.qloguniform(math.exp(p.min), math.exp(p.max), p.q)
    if d == "inv_log_uniform":
        return tune.loguniform(math.exp(-p.max), math.exp(-p.min))
    if d == "normal":
        return tune.randn(p.mu, p.sigma)
    if d == "q_normal":
        return tune.qrandn(p.mu, p.sigma, p.q)
    if d in ("log_normal", "q_log_normal"):
        dom = Float(None, None)
        dom.set_sampler(_LogNormal(p.mu, p.sigma))
        return dom.quantized(p.q) if d == "q_log_normal" else dom
    raise ValueError(f"no Tune domain for {d}")


def hyperopt_domain(p: Param) -> Any:
    """One parameter as a native hyperopt expression, labelled by its dotted name."""
    from hyperopt import hp
    from hyperopt.pyll import scope

    d, label = p.distribution, p.name
    if d == "constant":
        return p.value
    if d == "categorical":
        if p.probabilities is None:
            return hp.choice(label, list(p.values))
        return hp.pchoice(label, list(zip(p.probabilities, p.values, strict=True)))
    if d == "int_uniform":
        return scope.int(hp.quniform(label, int(p.min), int(p.max), 1))
    if d == "uniform":
        return hp.uniform(label, p.min, p.max)
    if d == "q_uniform":
        return hp.quniform(label, p.min, p.max, p.q)
    if d in ("log_uniform_values", "inv_log_uniform_values"):
        return hp.loguniform(label, math.log(p.min), math.log(p.max))
    if d == "q_log_uniform_values":
        return hp.qloguniform(label, math.log(p.min), math.log(p.max), p.q)
    if d == "log_uniform":
        return hp.loguniform(label, p.min, p.max)
    if d == "q_log_uniform":
        return hp.qloguniform(label, p.min, p.max, p.q)
    if d == "inv_log_uniform":
        return hp.loguniform(label, -p.max, -p.min)
    if d == "normal":
        return hp.normal(label, p.mu, p.sigma)
    if d == "q_normal":
        return hp.qnormal(label, p.mu, p.sigma, p.q)
    if d == "log_normal":
        return hp.lognormal(label, p.mu, p.sigma)
    if d == "q_log_normal":
        return hp.qlognormal(label, p.mu, p.sigma, p.q)
    raise ValueError(f"no hyperopt expression for {d}")


def put_nested(tree: dict, path: tuple[str, ...], value: Any) -> None:
    """Set ``tree[path[0]][path[1]]... = value``, creating the mappings on the way."""
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def trial_config(config: dict, params: tuple[Param, ...]) -> dict:
    """What the trainable receives from Tune's config: a conditional grid's combination merged back in, and the
    conditional parameters whose condition is false left out."""
    cfg = dict(config)
    combo = cfg.pop(GRID_KEY, None)
    if combo:
        cfg = deep_merge(cfg, combo)
    return effective_config(cfg, params)


def grid_combinations(params: tuple[Param, ...]) -> list[dict]:
    """Every valid combination of a grid, switched-off conditional parameters left out, duplicates removed."""
    names = [p.path for p in params]
    seen, combos = set(), []
    for values in itertools.product(*(p.grid_values() for p in params)):
        nested: dict = {}
        for path, v in zip(names, values, strict=True):
            put_nested(nested, path, v)
        kept = {p.path: v for p, v in zip(params, values, strict=True) if p.active(nested)}
        key = repr(sorted(kept.items()))
        if key not in seen:
            seen.add(key)
            combo: dict = {}
            for path, v in kept.items():
                put_nested(combo, path, v)
            combos.append(combo)
    return combos


def param_space(params: tuple[Param, ...], method: str) -> dict:
    """The searched part of Tune's ``param_space`` (for ``bayes``, only the constants: hyperopt holds the rest)."""
    space: dict = {}
    if method == "grid" and any(p.when for p in params):
        space[GRID_KEY] = tune.grid_search(grid_combinations(params))
        return space
    for p in params:
        if method == "bayes" and not p.is_constant:
            continue
        if method == "grid":
            values = p.grid_values()
            put_nested(space, p.path, values[0] if p.is_constant else tune.grid_search(values))
        else:
            put_nested(space, p.path, tune_domain(p))
    return space


def hyperopt_space(params: tuple[Param, ...]) -> dict:
    """The searched parameters as one nested native hyperopt space (constants stay in ``param_space``)."""
    space: dict = {}
    for p in params:
        if not p.is_constant:
            put_nested(space, p.path, hyperopt_domain(p))
    return space


def grid_size(params: tuple[Param, ...]) -> int:
    if any(p.when for p in params):
        return len(grid_combinations(params))
    return math.prod(len(p.grid_values()) for p in params)


def candidates(params: tuple[Param, ...]) -> dict[str, list | tuple[float, float]]:
    """Each searched parameter's possible values: a list when finite, ``(low, high)`` when continuous."""
    out: dict[str, list | tuple[float, float]] = {}
    for p in params:
        if p.distribution in ("constant", "categorical", "int_uniform"):
            out[p.name] = p.grid_values()
        elif p.min is not None:
            dom = tune_domain(p)
            out[p.name] = (float(dom.lower), float(dom.upper))
        else:  # normal laws are unbounded
            out[p.name] = (-math.inf, math.inf)
    return out


def pbt_mutations(params: tuple[Param, ...]) -> dict:
    """PBT's ``hyperparam_mutations`` derived from the parameters: lists for finite ones, domains for the rest."""
    out: dict = {}
    for p in params:
        if p.is_constant:
            continue
        dist_values = p.distribution in ("categorical", "int_uniform")
        put_nested(out, p.path, p.grid_values() if dist_values else tune_domain(p))
    return out


def describe(value: Any) -> str:
    """A short, readable form of a domain for ``search validate``."""
    if isinstance(value, Mapping) and "grid_search" in value:
        vals = value["grid_search"]
        shown = vals if len(vals) <= 12 else [*vals[:5], "...", *vals[-2:]]
        return f"grid_search({len(vals)} values: {shown})"
    if hasattr(value, "sampler") or hasattr(value, "get_sampler"):
        sampler = value.get_sampler() if hasattr(value, "get_sampler") else value.sampler
        bounds = f"[{getattr(value, 'lower', '')}, {getattr(value, 'upper', '')}]" if hasattr(value, "lower") else ""
        cats = f"{list(value.categories)}" if hasattr(value, "categories") else ""
        return f"{type(value).__name__}{bounds}{cats} {sampler}".strip()
    return repr(value)
