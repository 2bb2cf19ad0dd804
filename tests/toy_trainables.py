"""Tiny trainables for the integration tests (no torch). Ray loads this file by path (``trainable: TOY:quadratic``).

``toy_decode`` and ``toy_train`` stand in for ``decode`` and ``finetune``: they write the same artifacts
(translations in the trial directory, a checkpoint with a ``model/`` directory) in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ray.cloudpickle
from ray import tune

from search.trainables import checkpointing

# Loaded by file path (also by `python -m search run` outside pytest): make the sibling helpers.py importable, and
# ship its code to the Ray workers with this file's (which search registers the same way), as they cannot import it.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers  # noqa: E402

ray.cloudpickle.register_pickle_by_value(helpers)
REFERENCES = helpers.TOY_REFERENCES
PRIMARY_METRIC = {"name": "score", "goal": "maximize"}  # what a sweep of these without `metric:` ranks by


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
    """Checkpoints a counter each step; reports ``value`` growing at rate ``lr`` and the step it ``started`` from.
    Restores from its checkpoint. ``settings.die_at``: the worker process dies (no exception, no cleanup) right after
    that step's checkpoint, once per trial (a marker under ``settings.marker_dir`` remembers), as on a lost node."""
    settings = config.get("settings", {})
    start, value = 0, 0.0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            state = json.load(f)
        start, value = state["step"], state["value"]
    for step in range(start, settings.get("steps", 6)):
        value += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step + 1, "value": value}, f)
            metrics = {"value": value, "step": step + 1, "started": start}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        marker = Path(settings.get("marker_dir", "."), f"died-{config['lr']}")
        if step + 1 == settings.get("die_at") and not marker.exists():
            marker.touch()
            os._exit(1)
        time.sleep(settings.get("sleep", 0))


def broken(config: dict) -> None:
    if config["x"] == 2:
        raise RuntimeError("x=2 is broken on purpose")
    tune.report({"score": float(config["x"])})


def _write_translations(hypotheses: list[str]) -> None:
    trial_dir = tune.get_context().get_trial_dir()
    for name, lines in (("hypotheses.txt", hypotheses), ("references.txt", REFERENCES)):
        with open(os.path.join(trial_dir, name + ".tmp"), "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(os.path.join(trial_dir, name + ".tmp"), os.path.join(trial_dir, name))


TOY_STEPS = 10  # decoder steps of every toy config: its cost grows with num_beams alone


def toy_decode(config: dict) -> None:
    """Like ``decode``: one report of BLEU; error grows with |length_penalty - 1|, greedy and early stopping.

    With ``settings.report_cost``, it reports a cost as ``decode`` does (``decoder_steps``, ``beam_steps``,
    ``est_seconds``) and more beams help a little (0.01 less error from 8 beams on), so 4 beams tie 8 at half the cost.
    """
    from search.metrics import corpus_scores

    report_cost = (config.get("settings") or {}).get("report_cost", False)
    error = 0.3 * abs(config["length_penalty"] - 1.0) + (0.15 if config["num_beams"] == 1 else 0.0)
    error += 0.01 if report_cost and config["num_beams"] < 8 else 0.0
    hyps = helpers.translations(error + (0.01 if config["early_stopping"] else 0.0), REFERENCES)
    _write_translations(hyps)
    beam_steps = TOY_STEPS * config["num_beams"]
    cost = {"decoder_steps": TOY_STEPS, "beam_steps": beam_steps, "est_seconds": 0.01 * beam_steps}
    tune.report({**corpus_scores(hyps, REFERENCES), **(cost if report_cost else {})})


@checkpointing
def toy_train(config: dict) -> None:
    """Like ``finetune``: BLEU rises at rate ``lr``; each report checkpoints a ``model/`` directory and the state."""
    from search.metrics import corpus_scores

    settings = config["settings"]
    step, quality = 0, 0.0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            step, quality = json.loads(Path(d, "state.json").read_text())
    while step < settings["steps"]:
        step, quality = step + 1, quality + config["lr"]
        hyps = helpers.translations(max(0.0, 0.8 - quality), REFERENCES)
        _write_translations(hyps)
        with tempfile.TemporaryDirectory() as d:
            shutil.copytree(settings["model_src"], Path(d, "model"))
            Path(d, "state.json").write_text(json.dumps([step, quality]))
            metrics = {"step": step * 10, **corpus_scores(hyps, REFERENCES)}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        time.sleep(settings["sleep"])
