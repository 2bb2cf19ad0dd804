"""The ``parameters`` section of a sweep: one :class:`Param` per (nested) parameter, with our ``when:`` conditions.

When ``distribution`` is absent it is inferred as W&B does: ``value`` -> constant, ``values`` -> categorical,
``min``/``max`` -> int_uniform for two integers else uniform, ``mu``/``sigma`` -> normal (the distributions are in
``search.spec.distributions``).

Parameter names follow W&B's rule (``NAME_PATTERN``: letters, digits, ``_``, ``.`` and ``-``). Nested parameters
(``x: {parameters: {...}}``) and dotted names (``optimizer.lr``) both become nested config dicts, as ``--set`` does:
``optimizer.lr`` and ``optimizer: {parameters: {lr: ...}}`` name the same key, so a spec may give it only once. A
conditional parameter names the parameters it depends on and the values that switch it on; when the condition is
false the trainable does not receive it::

    lr_schedule: {values: [constant, linear]}
    warmup_steps: {values: [0, 100, 500], when: {lr_schedule: linear}}   # or when: {lr_schedule: [linear, cosine]}

Example:
    >>> (lr,) = parse_parameters({"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}, "f", "random")
    >>> lr.dist.law()
    Law(kind='loguniform', a=0.0001, b=0.01, q=None)
    >>> lr.dist.bounds()
    (0.0001, 0.01)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from search.checks import is_int
from search.errors import SpecError
from search.spec.distributions import DISTRIBUTIONS, PARAM_KEYS, Categorical, Constant, Distribution, Law
from search.spec.layers import deep_merge
from search.spec.rules import check_keys, did_you_mean

# A conditional grid's combinations are one grid over this key; trial_config merges them back into the config.
GRID_KEY = "_grid"
# W&B's rule for a parameter's name (schema.json, definitions.parameters.propertyNames); a '.' nests one key in another.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Param:
    """One searched (or constant) parameter; ``path`` is its place in the nested config."""

    path: tuple[str, ...]
    dist: Distribution
    when: tuple[tuple[tuple[str, ...], tuple], ...] = ()  # ((path of the parent, allowed values), ...)

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def distribution(self) -> str:
        return self.dist.name

    @property
    def is_constant(self) -> bool:
        return isinstance(self.dist, Constant)

    def grid_values(self) -> list:
        """Every value of a finite distribution, in order (grid search enumerates these)."""
        return self.dist.grid_values()

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
        return "int_uniform" if is_int(spec.get("min")) and is_int(spec.get("max")) else "uniform"
    return "constant"


def _parse_one(path: tuple[str, ...], spec: Any, file: str, method: str) -> Param:
    key = "parameters." + ".".join(path)
    if not isinstance(spec, Mapping):
        raise SpecError(file, key, f"must be a mapping like {{values: [...]}} or {{min: .., max: ..}}, got {spec!r}")
    check_keys(spec, PARAM_KEYS, file, f"{key}.")
    name = _infer(spec)
    if not isinstance(name, str) or name not in DISTRIBUTIONS:
        raise SpecError(
            file,
            f"{key}.distribution",
            f"unknown distribution {name!r};{did_you_mean(name, DISTRIBUTIONS)} valid: {', '.join(DISTRIBUTIONS)}",
        )
    cls = DISTRIBUTIONS[name]
    needs_keys = not cls.DEFAULTS.keys() >= set(cls.keys())  # beta's keys all have defaults
    if needs_keys and not any(k in spec for k in ("value", "values", "min", "max", "mu", "sigma")):
        raise SpecError(file, key, "needs value, values, min/max or mu/sigma")
    dist = cls.parse(spec, file, key)
    if method == "grid" and not cls.finite:
        raise SpecError(
            file,
            key,
            f"method grid needs a finite set of values, got continuous distribution {name}; use values: [...]",
        )
    return Param(path=path, dist=dist)


class _Written(NamedTuple):
    """A parameter as the YAML wrote it: its ``when`` and where it sits (``parameters.opt.parameters.lr``)."""

    param: Param
    when: Any
    where: str


def _path_of(name: Any, prefix: tuple[str, ...], file: str) -> tuple[str, ...]:
    """A parameter's place in the nested config: ``optimizer.lr`` under ``prefix`` -> ``prefix + (optimizer, lr)``."""
    key = "parameters." + ".".join(prefix + (str(name),))
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(file, key, f"a name must match {NAME_PATTERN.pattern} (W&B's rule), got {name!r}")
    parts = tuple(name.split("."))
    if not all(parts):
        raise SpecError(file, key, f"a '.' nests one name in another, so no part may be empty, got {name!r}")
    return prefix + parts


def _flatten(spec: Mapping, prefix: tuple[str, ...], where: str, file: str, method: str, out: list[_Written]) -> None:
    for name, sub in spec.items():
        path = _path_of(name, prefix, file)
        if isinstance(sub, Mapping) and "parameters" in sub:
            extra = sorted(set(sub) - {"parameters"})
            if extra:
                key = "parameters." + ".".join(path) + "." + extra[0]
                raise SpecError(file, key, "a nested parameter group holds only `parameters`")
            if not isinstance(sub["parameters"], Mapping) or not sub["parameters"]:
                raise SpecError(file, "parameters." + ".".join(path) + ".parameters", "must be a non-empty mapping")
            _flatten(sub["parameters"], path, f"{where}.{name}.parameters", file, method, out)
        else:
            when = sub.get("when") if isinstance(sub, Mapping) else None
            out.append(_Written(_parse_one(path, sub, file, method), when, f"{where}.{name}"))


def _check_distinct(written: list[_Written], file: str) -> None:
    """Two parameters never share a config key, and none sits inside another's value (``opt`` and ``opt.lr``)."""
    seen: dict[tuple[str, ...], str] = {}
    for w in written:
        if w.param.path in seen:
            raise SpecError(
                file, w.where, f"the same config key as {seen[w.param.path]} (a dotted name is a nested key); keep one"
            )
        seen[w.param.path] = w.where
    for w in written:
        for i in range(1, len(w.param.path)):
            if w.param.path[:i] in seen:
                raise SpecError(
                    file, w.where, f"nests under {'.'.join(w.param.path[:i])!r}, which {seen[w.param.path[:i]]} "
                    "sets to a value; rename one of them"
                )  # fmt: skip


def _parse_when(param: Param, when: Any, by_name: dict[str, Param], file: str) -> Param:
    key = f"parameters.{param.name}.when"
    if not isinstance(when, Mapping) or not when:
        raise SpecError(file, key, f"must map a parameter to the value(s) that switch this one on, got {when!r}")
    conds = []
    for parent_name, allowed in when.items():
        parent = by_name.get(str(parent_name))
        if parent is None:
            raise SpecError(
                file,
                f"{key}.{parent_name}",
                f"no parameter {parent_name!r};{did_you_mean(parent_name, by_name)} valid: {', '.join(by_name)}",
            )
        if parent is param:
            raise SpecError(file, f"{key}.{parent_name}", "a parameter cannot depend on itself")
        if not isinstance(parent.dist, Constant | Categorical):
            raise SpecError(
                file, f"{key}.{parent_name}", f"must name a parameter with values, got {parent.distribution}"
            )
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        choices = parent.grid_values()
        for a in allowed:
            if a not in choices:
                raise SpecError(file, f"{key}.{parent_name}", f"{a!r} is not among its values {choices!r}")
        conds.append((parent.path, allowed))
    return replace(param, when=tuple(conds))


def _check_acyclic(params: list[Param], file: str) -> None:
    """A chain of conditions must end: follow each parent and refuse cycles."""
    lookup = {p.path: p for p in params}
    for p in params:
        seen, todo = {p.path}, [c[0] for c in p.when]
        while todo:
            parent = todo.pop()
            if parent in seen:
                raise SpecError(file, f"parameters.{p.name}.when", "conditions form a cycle")
            seen.add(parent)
            todo.extend(c[0] for c in lookup[parent].when)


def parse_parameters(spec: Mapping, file: str, method: str) -> tuple[Param, ...]:
    """Validate a W&B ``parameters`` mapping into a flat tuple of :class:`Param` (nested names joined by '.')."""
    written: list[_Written] = []
    _flatten(spec, (), "parameters", file, method, written)
    _check_distinct(written, file)
    by_name = {w.param.name: w.param for w in written}
    params = [w.param if w.when is None else _parse_when(w.param, w.when, by_name, file) for w in written]
    _check_acyclic(params, file)
    return tuple(params)


def put_nested(tree: dict, path: tuple[str, ...], value: Any) -> None:
    """Set ``tree[path[0]][path[1]]... = value``, creating the mappings on the way."""
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _copy_nested(m: Mapping) -> dict:
    return {k: _copy_nested(v) if isinstance(v, Mapping) else v for k, v in m.items()}


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


def trial_config(config: Mapping, params: tuple[Param, ...]) -> dict:
    """What the trainable receives from Tune's config: a conditional grid's combination merged back in, and the
    conditional parameters whose condition is false left out."""
    cfg = dict(config)
    combo = cfg.pop(GRID_KEY, None)
    if combo:
        cfg = deep_merge(cfg, combo)
    return effective_config(cfg, params)


__all__ = [
    "DISTRIBUTIONS", "GRID_KEY", "NAME_PATTERN", "Distribution", "Law", "Param", "effective_config", "parse_parameters",
    "put_nested", "trial_config",
]  # fmt: skip
