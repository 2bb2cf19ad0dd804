"""The validated sweep: frozen dataclasses, one per YAML mapping, and the names every layer agrees on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.sections import SECTIONS
from search.spec.params import Param

# Trials a random or bayes sweep runs when the spec gives no run_cap (Ray's num_samples; PBT's population).
DEFAULT_SAMPLES = 10
# A trial that fails (its node died, its worker crashed) is restarted this many times, from its last checkpoint
# when it keeps them; a trial that fails on a bug fails that many times more, which costs little next to a lost node.
DEFAULT_MAX_FAILURES = 2
METHODS = ("grid", "random", "bayes")
GOALS = {"maximize": "max", "minimize": "min"}


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str  # maximize | minimize
    target: float | None = None  # W&B's metric.target: the sweep stops once a trial reaches it

    @property
    def mode(self) -> str:
        """Ray's spelling of the goal: ``max`` or ``min``."""
        return GOALS[self.goal]


@dataclass(frozen=True)
class Scheduler:
    type: str  # fifo | asha | pbt | ... (names and arguments are checked by search.tune.registry)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Checkpointing:
    # checkpoints kept per trial, best by the metric; None: 2, or 4 under PBT (donors' must last)
    keep: int | None = None


@dataclass(frozen=True)
class Spec:
    """A validated sweep. ``raw`` is the merged YAML mapping it came from (saved beside every run)."""

    file: str
    name: str
    method: str
    metric: Metric | None  # None: a grid or random sweep that ranks by its trainable's primary metric
    parameters: tuple[Param, ...]
    scheduler: Scheduler
    run_cap: int | None
    trainable: str | None
    resources: Resources
    max_concurrent: int | None
    seed: int | None
    storage: str  # a local or shared-filesystem path, or a URI (s3://bucket/prefix)
    checkpoint: Checkpointing
    wandb: Mapping[str, Any]
    model: Any
    data: Mapping[str, Any]
    settings: Mapping[str, Any]
    columns: tuple[str, ...]  # more reported metrics shown in the ranked table, after the metric
    extra: Mapping[str, Any]  # W&B-only keys, kept as given
    raw: Mapping[str, Any]
    storage_options: Mapping[str, Any] = field(default_factory=dict)  # the URI's filesystem options (search.storage)
    max_failures: int = DEFAULT_MAX_FAILURES  # Ray's FailureConfig: retries of a failed trial (-1: forever)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the spec are resolved against (the spec file's)."""
        return Path(self.file).resolve().parent

    @property
    def samples(self) -> int:
        """Trials of a random or bayes sweep (a grid runs each combination once)."""
        return self.run_cap or DEFAULT_SAMPLES

    @property
    def searched(self) -> tuple[Param, ...]:
        """The parameters that vary between trials (not the ``value:`` constants)."""
        return tuple(p for p in self.parameters if not p.is_constant)


__all__ = [
    "DEFAULT_MAX_FAILURES",
    "DEFAULT_SAMPLES",
    "GOALS",
    "METHODS",
    "SECTIONS",
    "Checkpointing",
    "Metric",
    "Resources",
    "Scheduler",
    "Spec",
]
