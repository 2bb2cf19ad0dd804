"""The ``parameters`` section of a sweep: W&B's distributions, nested parameters and our ``when:`` conditions.

Every W&B distribution is accepted with W&B's meaning (https://docs.wandb.ai, "sweep configuration"):

    constant              {value}
    categorical           {values, probabilities?}
    int_uniform           {min, max}            integers, both ends included
    uniform               {min, max}
    q_uniform             {min, max, q}         round(uniform / q) * q
    log_uniform_values    {min, max}            log-uniform between min and max (> 0)
    q_log_uniform_values  {min, max, q}
    log_uniform           {min, max}            exp(uniform(min, max)): the bounds are natural logs
    q_log_uniform         {min, max, q}
    inv_log_uniform_values{min, max}            1 / X with log(X) uniform; the same law as log_uniform_values
    inv_log_uniform       {min, max}            exp(-uniform(min, max)): the bounds are natural logs
    normal                {mu, sigma}
    q_normal              {mu, sigma, q}
    log_normal            {mu, sigma}           exp(normal(mu, sigma))
    q_log_normal          {mu, sigma, q}

When ``distribution`` is absent it is inferred as W&B does: ``value`` -> constant, ``values`` -> categorical, ``min``/``max``
-> int_uniform for two integers else uniform, ``mu``/``sigma`` -> normal.

Nested parameters (``x: {parameters: {...}}``) become nested config dicts. A conditional parameter names the parameters it
depends on and the values that switch it on; when the condition is false the trainable does not receive it::

    lr_schedule: {values: [constant, linear]}
    warmup_steps: {values: [0, 100, 500], when: {lr_schedule: linear}}   # or when: {lr_schedule: [linear, cosine]}
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search.errors import SpecError

# distribution -> (required keys, optional keys)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "constant": (("value",), ()),
    "categorical": (("values",), ("probabilities",)),
    "int_uniform": (("min", "max"), ()),
    "uniform": (("min", "max"), ()),
    "q_uniform": (("min", "max", "q"), ()),
    "log_uniform_values": (("min", "max"), ()),
    "q_log_uniform_values": (("min", "max", "q"), ()),
    "log_uniform": (("min", "max"), ()),
    "q_log_uniform": (("min", "max", "q"), ()),
    "inv_log_uniform_values": (("min", "max"), ()),
    "inv_log_uniform": (("min", "max"), ()),
    "normal": (("mu", "sigma"), ()),
    "q_normal": (("mu", "sigma", "q"), ()),
    "log_normal": (("mu", "sigma"), ()),
    "q_log_normal": (("mu", "sigma", "q"), ()),
}
VALUE_KEYS = ("value", "values", "min", "max", "q", "mu", "sigma", "probabilities")
PARAM_KEYS = ("distribution",) + VALUE_KEYS + ("parameters", "when")
FINITE = ("constant", "categorical", "int_uniform", "q_uniform")  # what a grid can enumerate
POSITIVE_BOUNDS = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")


@dataclass(frozen=True)
class Param:
    """One searched (or constant) parameter; ``path`` is its place in the nested config."""

    path: tuple[str, ...]
    distribution: str
    value: Any = None
    values: tuple = ()
    min: float | None = None
    max: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None
    probabilities: tuple[float, ...] | None = None
    when: tuple[tuple[tuple[str, ...], tuple], ...] = ()  # ((path of the parent, allowed values), ...)

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def is_constant(self) -> bool:
        return self.distribution == "constant"

    def grid_values(self) -> list:
        """Every value of a finite distribution, in order (grid search enumerates these)."""
        if self.distribution == "constant":
            return [self.value]
        if self.distribution == "categorical":
            return list(self.values)
        if self.distribution == "int_uniform":
            return list(range(int(self.min), int(self.max) + 1))
        if self.distribution == "q_uniform":
            n = int(math.floor((self.max - self.min) / self.q + 1e-9))
            return [round(self.min + i * self.q, 12) for i in range(n + 1)]
        raise ValueError(f"{self.name}: {self.distribution} is continuous")

    def active(self, config: Mapping) -> bool:
        """Whether this parameter's ``when`` condition holds in a (nested) config."""
        for path, allowed in self.when:
            node: Any = config
            for part in path:
                if not isinstance(node, Mapping) or part not in node:
                    return False
                node = node[part]
            if node not in allowed:
                return False
        return True


def _infer(spec: Mapping) -> str:
    if "distribution" in spec:
        return spec["distribution"]
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "mu" in spec or "sigma" in spec:
        return "normal"
    if "min" in spec or "max" in spec:
        ints = all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    return "constant"


def _num(v: Any, file: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise SpecError(file, key, f"must be a number, got {v!r}")
    return v


def _parse_one(path: tuple[str, ...], spec: Any, file: str, method: str) -> Param:
    key = "parameters." + ".".join(path)
    if not isinstance(spec, Mapping):
        raise SpecError(file, key, f"must be a mapping like {{values: [...]}} or {{min: .., max: ..}}, got {spec!r}")
    for k in spec:
        if k not in PARAM_KEYS:
            raise SpecError(file, f"{key}.{k}", f"unknown key; valid keys: {', '.join(PARAM_KEYS)}")
    dist = _infer(spec)
    if dist not in DISTRIBUTIONS:
        raise SpecError(
            file, f"{key}.distribution", f"unknown distribution {dist!r}; valid: {', '.join(DISTRIBUTIONS)}"
        )
    if "value" not in spec and "values" not in spec and not any(k in spec for k in ("min", "max", "mu", "sigma")):
        raise SpecError(file, key, "needs value, values, min/max or mu/sigma")
    required, optional = DISTRIBUTIONS[dist]
    for k in required:
        if k not in spec:
            raise SpecError(file, f"{key}.{k}", f"missing; distribution {dist} needs {', '.join(required)}")
    for k in VALUE_KEYS:
        if k in spec and k not in required + optional:
            raise SpecError(file, f"{key}.{k}", f"not used by distribution {dist} (it takes {', '.join(required)})")

    fields: dict[str, Any] = {}
    if dist == "constant":
        fields["value"] = spec["value"]
    elif dist == "categorical":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SpecError(file, f"{key}.values", f"must be a non-empty list, got {values!r}")
        fields["values"] = tuple(values)
        probs = spec.get("probabilities")
        if probs is not None:
            if not isinstance(probs, list) or len(probs) != len(values):
                raise SpecError(file, f"{key}.probabilities", f"must be a list of {len(values)} numbers, got {probs!r}")
            probs = [_num(p, file, f"{key}.probabilities") for p in probs]
            if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
                raise SpecError(file, f"{key}.probabilities", f"must be >= 0 and sum to 1, got {probs!r}")
            fields["probabilities"] = tuple(probs)
    else:
        for k in required:
            fields[k] = _num(spec[k], file, f"{key}.{k}")
        if "min" in fields and not fields["min"] < fields["max"]:
            raise SpecError(file, f"{key}.min", f"must be < max, got min={fields['min']} max={fields['max']}")
        if dist == "int_uniform" and not all(isinstance(spec[k], int) for k in ("min", "max")):
            raise SpecError(file, key, f"int_uniform needs integer bounds, got min={spec['min']} max={spec['max']}")
        if dist in POSITIVE_BOUNDS and fields["min"] <= 0:
            raise SpecError(file, f"{key}.min", f"must be > 0 for {dist} (a log scale), got {fields['min']}")
        if "q" in fields and fields["q"] <= 0:
            raise SpecError(file, f"{key}.q", f"must be > 0, got {fields['q']}")
        if "sigma" in fields and fields["sigma"] <= 0:
            raise SpecError(file, f"{key}.sigma", f"must be > 0, got {fields['sigma']}")
    if method == "grid" and dist not in FINITE:
        raise SpecError(
            file,
            key,
            f"method grid needs a finite set of values, got continuous distribution {dist}; use values: [...]",
        )
    return Param(path=path, distribution=dist, **fields)


def _flatten(spec: Mapping, prefix: tuple[str, ...], file: str, method: str, out: list[tuple[Param, Any]]) -> None:
    for name, sub in spec.items():
        if not isinstance(name, str) or not name or "." in name:
            raise SpecError(file, "parameters." + ".".join(prefix + (str(name),)), "names are non-empty, without '.'")
        path = prefix + (name,)
        if isinstance(sub, Mapping) and "parameters" in sub:
            extra = sorted(set(sub) - {"parameters"})
            if extra:
                key = "parameters." + ".".join(path) + "." + extra[0]
                raise SpecError(file, key, "a nested parameter group holds only `parameters`")
            if not isinstance(sub["parameters"], Mapping) or not sub["parameters"]:
                raise SpecError(file, "parameters." + ".".join(path) + ".parameters", "must be a non-empty mapping")
            _flatten(sub["parameters"], path, file, method, out)
        else:
            out.append((_parse_one(path, sub, file, method), sub.get("when") if isinstance(sub, Mapping) else None))


def _parse_when(param: Param, when: Any, by_name: dict[str, Param], file: str) -> Param:
    key = f"parameters.{param.name}.when"
    if not isinstance(when, Mapping) or not when:
        raise SpecError(file, key, f"must map a parameter to the value(s) that switch this one on, got {when!r}")
    conds = []
    for parent_name, allowed in when.items():
        parent = by_name.get(str(parent_name))
        if parent is None:
            raise SpecError(file, f"{key}.{parent_name}", f"no parameter {parent_name!r}; valid: {', '.join(by_name)}")
        if parent is param:
            raise SpecError(file, f"{key}.{parent_name}", "a parameter cannot depend on itself")
        if parent.distribution not in ("constant", "categorical"):
            raise SpecError(
                file, f"{key}.{parent_name}", f"must name a parameter with values, got {parent.distribution}"
            )
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        choices = parent.grid_values()
        for a in allowed:
            if a not in choices:
                raise SpecError(file, f"{key}.{parent_name}", f"{a!r} is not among its values {choices!r}")
        conds.append((parent.path, allowed))
    return Param(**{**param.__dict__, "when": tuple(conds)})


def parse_parameters(spec: Mapping, file: str, method: str) -> tuple[Param, ...]:
    """Validate a W&B ``parameters`` mapping into a flat tuple of :class:`Param` (nested names joined by '.')."""
    pairs: list[tuple[Param, Any]] = []
    _flatten(spec, (), file, method, pairs)
    by_name = {p.name: p for p, _ in pairs}
    params = [p if when is None else _parse_when(p, when, by_name, file) for p, when in pairs]
    # A chain of conditions must end: follow each parent and refuse cycles.
    lookup = {p.path: p for p in params}
    for p in params:
        seen, todo = {p.path}, [c[0] for c in p.when]
        while todo:
            parent = todo.pop()
            if parent in seen:
                raise SpecError(file, f"parameters.{p.name}.when", "conditions form a cycle")
            seen.add(parent)
            todo.extend(c[0] for c in lookup[parent].when)
    return tuple(params)


def effective_config(config: Mapping, params: tuple[Param, ...]) -> dict:
    """``config`` without the conditional parameters whose condition is false (what the trainable receives)."""
    out = _copy_nested(config)
    for p in params:
        if p.when and not p.active(config):
            node = out
            for part in p.path[:-1]:
                node = node.get(part, {})
            if isinstance(node, dict):
                node.pop(p.path[-1], None)
    return out


def _copy_nested(m: Mapping) -> dict:
    return {k: _copy_nested(v) if isinstance(v, Mapping) else v for k, v in m.items()}


def deep_merge(base: dict, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base``; mappings merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out
