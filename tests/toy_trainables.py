"""Tiny trainables for the runner's integration tests (no torch)."""

from __future__ import annotations

import json
import os
import tempfile
import time

from ray import tune

from search.trainables import checkpointing


def quadratic(config: dict) -> None:
    """Reports ``score`` = -(x - 3)^2 (+ nested offset) for a few iterations; records the config it received."""
    steps = config.get("settings", {}).get("steps", 3)
    with open("artifact.txt", "w") as f:  # in Ray's working directory; the runner syncs it to the trial dir
        f.write(str(config["x"]))
    for i in range(steps):
        score = -((config["x"] - 3) ** 2) + config.get("opt", {}).get("offset", 0) + 0.01 * i
        tune.report({"score": score, "seen_keys": ",".join(sorted(k for k in config if k != "settings"))})
        time.sleep(config.get("settings", {}).get("sleep", 0))


@checkpointing
def counter(config: dict) -> None:
    """Checkpoints a counter each step; reports ``value`` growing at rate ``lr``. Restores from its checkpoint."""
    start, value = 0, 0.0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            state = json.load(f)
        start, value = state["step"], state["value"]
    for step in range(start, config.get("settings", {}).get("steps", 6)):
        value += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step + 1, "value": value}, f)
            tune.report({"value": value, "step": step + 1}, checkpoint=tune.Checkpoint.from_directory(d))
        time.sleep(config.get("settings", {}).get("sleep", 0))


def broken(config: dict) -> None:
    if config["x"] == 2:
        raise RuntimeError("x=2 is broken on purpose")
    tune.report({"score": float(config["x"])})
