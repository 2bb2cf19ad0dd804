"""W&B's distributions (https://docs.wandb.ai, "sweep configuration"; ``wandb/sweeps``' ``schema.json``), one class
each: it checks its own keys and bounds, lists its values when a grid can enumerate them, and states its law.

The Ray side (``search.tune.space``) turns a law into a Tune domain and a hyperopt expression without knowing W&B's
names; a law neither library has (beta) is drawn by the class's own ``sample`` and searched through its ``ppf``.
Adding a distribution is adding a class here and naming it in ``DISTRIBUTIONS``.

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
    beta                  {a?, b?}              beta(a, b) on [0, 1]; a and b default to 1
    q_beta                {a?, b?, q?}

Example:
    >>> LogUniform(min=-9.2, max=-2.3).law().kind
    'loguniform'
    >>> QUniform(min=0.0, max=1.0, q=0.25).grid_values()
    [0.0, 0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

import numpy as np

from search.checks import is_int, is_number
from search.errors import SpecError
from search.spec.rules import whole


class Law(NamedTuple):
    """A law that Ray Tune and hyperopt both draw natively, rounded to a multiple of ``q`` when ``q`` is set.

    ``kind``: ``randint`` (integers ``a..b``, both included), ``uniform``, ``loguniform`` (``a``, ``b`` > 0 are the
    values' bounds), ``normal`` or ``lognormal`` (``a`` = mu, ``b`` = sigma of the underlying normal).
    """

    kind: str
    a: float
    b: float
    q: float | None = None


@dataclass(frozen=True)
class Distribution:
    """One W&B distribution. Its dataclass fields are its YAML keys; ``DEFAULTS`` holds W&B's defaults."""

    name: ClassVar[str]
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    q = None  # rounding step: a field of the q_ variants (see ``quantized``), None elsewhere
    finite: ClassVar[bool] = False  # a grid can enumerate it
    listed: ClassVar[bool] = False  # its values are a list (candidates, PBT mutations), not a range

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def parse(cls, spec: Mapping, file: str, key: str) -> Distribution:
        """The distribution of one parameter's mapping, its keys, types and bounds checked."""
        required = [k for k in cls.keys() if k not in cls.DEFAULTS]
        for k in required:
            if k not in spec:
                raise SpecError(file, f"{key}.{k}", f"missing; distribution {cls.name} needs {', '.join(required)}")
        for k in VALUE_KEYS:
            if k in spec and k not in cls.keys():
                raise SpecError(
                    file, f"{key}.{k}", f"not used by distribution {cls.name} (it takes {', '.join(required)})"
                )
        values = {k: spec.get(k, cls.DEFAULTS.get(k)) for k in cls.keys()}
        dist = cls(**cls.convert(values, file, key))
        dist.check(file, key)
        return dist

    @classmethod
    def convert(cls, values: dict, file: str, key: str) -> dict:
        """YAML values -> field values (numbers checked by default)."""
        for k, v in values.items():
            if not is_number(v):
                raise SpecError(file, f"{key}.{k}", f"must be a number, got {v!r}")
        return values

    def check(self, file: str, key: str) -> None:
        """Rules between the fields (bounds); raise SpecError."""
        for k in ("q", "sigma"):
            if getattr(self, k, None) is not None and getattr(self, k) <= 0:
                raise SpecError(file, f"{key}.{k}", f"must be > 0, got {getattr(self, k)}")

    def grid_values(self) -> list:
        """Every value, in order (only for ``finite`` distributions)."""
        raise ValueError(f"{self.name} is continuous")

    def law(self) -> Law | None:
        """The native law, or None when neither Ray nor hyperopt has one (then ``sample``/``ppf`` serve)."""
        return None

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` draws (used for the laws Ray lacks)."""
        raise NotImplementedError

    def ppf(self, u: float) -> float:
        """The value at quantile ``u`` (hyperopt searches ``u`` uniformly when the law is not native)."""
        raise NotImplementedError

    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value (infinite for the normal laws)."""
        return (-math.inf, math.inf)

    def describe(self) -> str:
        shown = " ".join(f"{k}={getattr(self, k)!r}" for k in self.keys() if getattr(self, k) is not None)
        return f"{self.name} {shown}".strip()


def _rounded(x: np.ndarray, q: float | None) -> np.ndarray:
    """W&B's quantisation: ``round(x / q) * q``."""
    return x if q is None else np.round(x / q) * q


@dataclass(frozen=True)
class Constant(Distribution):
    name = "constant"
    finite = listed = True
    value: Any

    @classmethod
    def convert(cls, values: dict, file: str, key: str) -> dict:
        return values

    def grid_values(self) -> list:
        return [self.value]


@dataclass(frozen=True)
class Categorical(Distribution):
    name = "categorical"
    DEFAULTS = {"probabilities": None}
    finite = listed = True
    values: tuple
    probabilities: tuple[float, ...] | None = None

    @classmethod
    def convert(cls, values: dict, file: str, key: str) -> dict:
        choices, probs = values["values"], values["probabilities"]
        if not isinstance(choices, list) or not choices:
            raise SpecError(file, f"{key}.values", f"must be a non-empty list, got {choices!r}")
        if probs is not None:
            if not isinstance(probs, list) or len(probs) != len(choices):
                raise SpecError(
                    file, f"{key}.probabilities", f"must be a list of {len(choices)} numbers, got {probs!r}"
                )
            if not all(is_number(p) for p in probs):
                raise SpecError(file, f"{key}.probabilities", f"must be a number, got {probs!r}")
            if any(p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
                raise SpecError(file, f"{key}.probabilities", f"must be >= 0 and sum to 1, got {probs!r}")
            probs = tuple(probs)
        return {"values": tuple(choices), "probabilities": probs}

    def grid_values(self) -> list:
        return list(self.values)

    def sample(self, rng: np.random.Generator, size: int) -> list:
        return [self.values[int(i)] for i in rng.choice(len(self.values), size=size, p=self.probabilities)]


@dataclass(frozen=True)
class Bounded(Distribution):
    """A law between ``min`` and ``max``."""

    min: float
    max: float

    def check(self, file: str, key: str) -> None:
        if not self.min < self.max:
            raise SpecError(file, f"{key}.min", f"must be < max, got min={self.min} max={self.max}")
        super().check(file, key)

    def bounds(self) -> tuple[float, float]:
        law = self.law()
        low, high = (law.a, law.b)
        return (float(low), float(high))


@dataclass(frozen=True)
class IntUniform(Bounded):
    name = "int_uniform"
    finite = listed = True

    @classmethod
    def convert(cls, values: dict, file: str, key: str) -> dict:
        return super().convert({k: whole(v) for k, v in values.items()}, file, key)  # min: 1e3 is the integer 1000

    def check(self, file: str, key: str) -> None:
        super().check(file, key)
        if not (is_int(self.min) and is_int(self.max)):
            raise SpecError(file, key, f"int_uniform needs integer bounds, got min={self.min} max={self.max}")

    def grid_values(self) -> list:
        return list(range(int(self.min), int(self.max) + 1))

    def law(self) -> Law:
        return Law("randint", int(self.min), int(self.max))


@dataclass(frozen=True)
class Uniform(Bounded):
    name = "uniform"

    def law(self) -> Law:
        return Law("uniform", self.min, self.max, self.q)


@dataclass(frozen=True)
class QUniform(Uniform):
    name = "q_uniform"
    finite = True
    q: float = 1.0

    def grid_values(self) -> list:
        n = int(math.floor((self.max - self.min) / self.q + 1e-9))
        return [round(self.min + i * self.q, 12) for i in range(n + 1)]


@dataclass(frozen=True)
class LogUniformValues(Bounded):
    """Log-uniform between ``min`` and ``max`` (> 0)."""

    name = "log_uniform_values"

    def check(self, file: str, key: str) -> None:
        super().check(file, key)
        if self.min <= 0:
            raise SpecError(file, f"{key}.min", f"must be > 0 for {self.name} (a log scale), got {self.min}")

    def law(self) -> Law:
        return Law("loguniform", self.min, self.max, self.q)


@dataclass(frozen=True)
class InvLogUniformValues(LogUniformValues):
    """1 / X with log X uniform on [log 1/max, log 1/min]: exactly the log-uniform law on [min, max]."""

    name = "inv_log_uniform_values"


@dataclass(frozen=True)
class LogUniform(Bounded):
    """exp(uniform(min, max)): the bounds are natural logs."""

    name = "log_uniform"

    def law(self) -> Law:
        return Law("loguniform", math.exp(self.min), math.exp(self.max), self.q)


@dataclass(frozen=True)
class InvLogUniform(Bounded):
    """exp(-uniform(min, max)): the bounds are natural logs of 1/X."""

    name = "inv_log_uniform"

    def law(self) -> Law:
        return Law("loguniform", math.exp(-self.max), math.exp(-self.min))


@dataclass(frozen=True)
class Normal(Distribution):
    name = "normal"
    mu: float
    sigma: float

    def law(self) -> Law:
        return Law("normal", self.mu, self.sigma, self.q)


@dataclass(frozen=True)
class LogNormal(Normal):
    """exp(normal(mu, sigma)): ``mu`` and ``sigma`` are the underlying normal's."""

    name = "log_normal"

    def law(self) -> Law:
        return Law("lognormal", self.mu, self.sigma, self.q)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return _rounded(np.exp(rng.normal(self.mu, self.sigma, size=size)), self.q)

    def bounds(self) -> tuple[float, float]:
        return (0.0, math.inf)


@dataclass(frozen=True)
class Beta(Distribution):
    """W&B's beta(a, b) on [0, 1] (``a``, ``b`` > 0, default 1: uniform). Neither Ray nor hyperopt has it."""

    name = "beta"
    DEFAULTS = {"a": 1.0, "b": 1.0}
    a: float = 1.0
    b: float = 1.0

    def check(self, file: str, key: str) -> None:
        for k in ("a", "b"):
            if getattr(self, k) <= 0:
                raise SpecError(file, f"{key}.{k}", f"must be > 0, got {getattr(self, k)}")
        super().check(file, key)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return _rounded(rng.beta(self.a, self.b, size=size), self.q)

    def ppf(self, u: float) -> float:
        from scipy.special import betaincinv

        return float(_rounded(np.asarray(betaincinv(self.a, self.b, u)), self.q))

    def bounds(self) -> tuple[float, float]:
        return (0.0, 1.0)


def quantized(base: type[Distribution], name: str) -> type[Distribution]:
    """W&B's ``q_`` variant of ``base``: the same law, rounded to a multiple of the field ``q`` (> 0).

    ``q`` is required, as W&B's examples write it, unless every field of ``base`` has a default (beta's).
    """
    defaults = {**base.DEFAULTS, "q": 1.0} if base.DEFAULTS.keys() >= set(base.keys()) else base.DEFAULTS
    namespace = {"__annotations__": {"q": float}, "q": 1.0, "name": name, "DEFAULTS": defaults}
    return dataclass(frozen=True)(type("Q" + base.__name__, (base,), namespace))


QLogUniformValues = quantized(LogUniformValues, "q_log_uniform_values")
QLogUniform = quantized(LogUniform, "q_log_uniform")
QNormal = quantized(Normal, "q_normal")
QLogNormal = quantized(LogNormal, "q_log_normal")
QBeta = quantized(Beta, "q_beta")


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    cls.name: cls
    for cls in (
        Constant, Categorical, IntUniform, Uniform, QUniform, LogUniformValues, QLogUniformValues, LogUniform,
        QLogUniform, InvLogUniformValues, InvLogUniform, Normal, QNormal, LogNormal, QLogNormal, Beta, QBeta,
    )
}  # fmt: skip
VALUE_KEYS = ("value", "values", "min", "max", "q", "mu", "sigma", "probabilities", "a", "b")
PARAM_KEYS = ("distribution",) + VALUE_KEYS + ("parameters", "when")


__all__ = ["DISTRIBUTIONS", "PARAM_KEYS", "VALUE_KEYS", "Categorical", "Constant", "Distribution", "Law"]
