"""Validated parameters -> what Ray Tune and hyperopt take: ``param_space`` domains, a hyperopt space, PBT mutations.

Each distribution (``search.spec.params``) states its law; this module knows how Ray and hyperopt draw each law:

- ``grid``: ``tune.grid_search`` per parameter; with conditional parameters, one grid over the valid combinations
  (so that a switched-off parameter does not multiply the grid with duplicates).
- ``random``: Ray's domains (``tune.uniform``, ``tune.loguniform``, ...); a law Ray lacks (log-normal, weighted
  categorical, beta) is drawn by the distribution's own ``sample``. Conditional parameters are sampled and dropped
  when their condition is false.
- ``bayes``: a native hyperopt space (``hp.loguniform``, ``hp.pchoice``, ...) handed to Ray's ``HyperOptSearch``; a
  law hyperopt lacks is searched through its quantile (``hp.uniform(0, 1)`` mapped by the distribution's ``ppf``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ray import tune
from ray.tune.search.sample import Categorical, Float, Sampler

from search.spec.distributions import Categorical as CategoricalDist
from search.spec.params import GRID_KEY, Distribution, Law, Param, put_nested


class _OwnSampler(Sampler):
    """Draws with a distribution's own ``sample`` (the W&B laws Ray lacks)."""

    def __init__(self, dist: Distribution):
        self.dist = dist

    def sample(self, domain, config=None, size=1, random_state=None):
        rng = random_state if random_state is not None else np.random.default_rng()
        items = list(self.dist.sample(rng, size))
        return items if size > 1 else items[0]

    def __str__(self):
        return self.dist.describe()


def _tune_law(law: Law) -> Any:
    kind, a, b, q = law
    if kind == "randint":
        return tune.randint(int(a), int(b) + 1)  # Ray's upper bound is exclusive, W&B's inclusive
    if kind == "uniform":
        return tune.quniform(a, b, q) if q else tune.uniform(a, b)
    if kind == "loguniform":
        return tune.qloguniform(a, b, q) if q else tune.loguniform(a, b)
    if kind == "normal":
        return tune.qrandn(a, b, q) if q else tune.randn(a, b)
    return None  # lognormal: Ray has none


def tune_domain(p: Param) -> Any:
    """One parameter as a Ray Tune domain (or a plain value for a constant)."""
    dist = p.dist
    if p.is_constant:
        return dist.value
    if isinstance(dist, CategoricalDist):
        if dist.probabilities is None:
            return tune.choice(list(dist.values))
        domain = Categorical(list(dist.values))
    else:
        law = dist.law()
        native = _tune_law(law) if law is not None else None
        if native is not None:
            return native
        domain = Float(None, None)
    domain.set_sampler(_OwnSampler(dist))  # set_sampler returns None
    return domain


def hyperopt_domain(p: Param) -> Any:
    """One parameter as a native hyperopt expression, labelled by its dotted name."""
    from hyperopt import hp
    from hyperopt.pyll import scope

    dist, label = p.dist, p.name
    if p.is_constant:
        return dist.value
    if isinstance(dist, CategoricalDist):
        if dist.probabilities is None:
            return hp.choice(label, list(dist.values))
        return hp.pchoice(label, list(zip(dist.probabilities, dist.values, strict=True)))
    law = dist.law()
    if law is None:
        return scope.call(dist.ppf, (hp.uniform(label, 0.0, 1.0),))
    kind, a, b, q = law
    if kind == "randint":
        return scope.int(hp.quniform(label, int(a), int(b), 1))
    if kind == "uniform":
        return hp.quniform(label, a, b, q) if q else hp.uniform(label, a, b)
    if kind == "loguniform":
        return (
            hp.qloguniform(label, math.log(a), math.log(b), q) if q else hp.loguniform(label, math.log(a), math.log(b))
        )
    if kind == "normal":
        return hp.qnormal(label, a, b, q) if q else hp.normal(label, a, b)
    return hp.qlognormal(label, a, b, q) if q else hp.lognormal(label, a, b)


def hyperopt_point(params: tuple[Param, ...], values: dict[str, Any]) -> dict[str, Any] | None:
    """A trial's searched values (by dotted name) as hyperopt records them: a choice's index, a value otherwise;
    None when one of them is drawn through a quantile (beta), which hyperopt cannot be told after the fact."""
    point: dict[str, Any] = {}
    for p in params:
        if p.is_constant or p.name not in values:
            continue  # a switched-off conditional parameter: absent, as hyperopt records an inactive one
        if isinstance(p.dist, CategoricalDist):
            point[p.name] = list(p.dist.values).index(values[p.name])
        elif p.dist.law() is None:
            return None
        else:
            point[p.name] = values[p.name]
    return point


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


def param_space(
    params: tuple[Param, ...], method: str, order: Callable[[list[dict]], list[dict]] | None = None
) -> dict:
    """The searched part of Tune's ``param_space`` (for ``bayes``, only the constants: hyperopt holds the rest).

    ``order``: the trainable's ``order_grid`` hook; a grid's trials then start in the order it gives the
    combinations (one ``grid_search`` over them, as for conditional parameters).
    """
    space: dict = {}
    if method == "grid" and (order is not None or any(p.when for p in params)):
        combos = grid_combinations(params)
        space[GRID_KEY] = tune.grid_search(order(combos) if order is not None else combos)
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
    """Each searched parameter's possible values: a list when listed, ``(low, high)`` when a range."""
    return {p.name: p.grid_values() if p.dist.listed else p.dist.bounds() for p in params}


def pbt_mutations(params: tuple[Param, ...]) -> dict:
    """PBT's ``hyperparam_mutations`` derived from the parameters: lists for listed ones, domains for the rest."""
    out: dict = {}
    for p in params:
        if not p.is_constant:
            put_nested(out, p.path, p.grid_values() if p.dist.listed else tune_domain(p))
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
