"""Helpers every trainable uses: thread count from the trial's CPUs, translations for the paired bootstrap."""

from __future__ import annotations

import os
from pathlib import Path


def trial_cpus(default: int = 1) -> int:
    """Number of CPUs Ray assigned to this trial (``default`` outside Ray)."""
    try:
        import ray

        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                return max(1, int(cpus))
    except Exception:  # not inside a Ray worker
        pass
    return default


def use_trial_cpus(default: int = 1) -> int:
    """Set torch (and OpenMP) threads to the trial's CPUs and return that number.

    Two trials with torch's default thread count on 2 cores made small ops ~30x slower here,
    so every trainable calls this first.
    """
    import torch

    n = trial_cpus(default)
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    return n


def write_translations(directory: Path, hypotheses: list[str], references: list[str]) -> None:
    """``hypotheses.txt`` and ``references.txt``, one sentence a line, for the ranking's paired bootstrap."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in (("hypotheses.txt", hypotheses), ("references.txt", references)):
        tmp = directory / f".{name}.tmp"
        tmp.write_text("".join(" ".join(line.split()) + "\n" for line in lines), encoding="utf-8")
        tmp.replace(directory / name)
