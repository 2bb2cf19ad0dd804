"""What every trainable does first: set its threads to the CPUs Ray gave the trial."""

from __future__ import annotations

import os
import sys


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
    """Set OpenMP's and torch's threads to the trial's CPUs and return that number.

    Two trials with torch's default thread count on 2 cores made small ops ~30x slower here, so the runner calls
    this before every trial and every trainable after importing torch. torch is set only when already imported
    (it reads ``OMP_NUM_THREADS`` when it is imported later).
    """
    n = trial_cpus(default)
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


__all__ = ["trial_cpus", "use_trial_cpus"]
