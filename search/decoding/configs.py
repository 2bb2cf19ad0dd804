"""Decoding configs, without the model or torch (the driver plans with them): the arguments the replay handles, the
searched values a shared pass covers, and the fixed batches. Which configs decode alike needs the model
(``search.decoding.beam.canonical``).

Example:
    >>> plan = plan_of({"num_beams": [4, 8], "length_penalty": (0.5, 1.5)})
    >>> plan
    {'grid': {'num_beams': [4, 8]}, 'continuous': ['length_penalty'], 'ranges': {'length_penalty': [0.5, 1.5]}}
    >>> planned_configs(plan, {"num_beams": 4, "length_penalty": 0.7})
    [{'num_beams': 4, 'length_penalty': 0.7}]
    >>> horizon(plan, {"num_beams": 4, "length_penalty": 0.7})
    ([{'num_beams': 4, 'length_penalty': 1.5}], False)
"""

from __future__ import annotations

import itertools
import math
from typing import Any

# Per-config arguments the replay handles; every other argument must be equal within a pass.
REPLAYED = ("num_beams", "length_penalty", "early_stopping", "num_return_sequences")
# ... less num_beams: configs equal in all else share a pass.
PASS_FREE = tuple(name for name in REPLAYED if name != "num_beams")
# A grid with more configs than this is not decoded ahead; each trial decodes its own config.
MAX_PLANNED = 10_000
# generate() arguments that are integers; hyperopt hands them over as floats.
INTEGER_ARGS = ("num_beams", "num_return_sequences", "no_repeat_ngram_size", "top_k", "min_length")


def plain_args(args: dict[str, Any]) -> dict[str, Any]:
    """``generate()`` arguments as Python values: numpy scalars (hyperopt) as numbers, integral floats of integer
    arguments as ints, an integer ``length_penalty`` as a float."""
    out = {k: v.item() if hasattr(v, "item") and not isinstance(v, list | dict) else v for k, v in args.items()}
    for key in INTEGER_ARGS:
        if isinstance(out.get(key), float) and out[key].is_integer():
            out[key] = int(out[key])
    if isinstance(out.get("length_penalty"), int) and not isinstance(out["length_penalty"], bool):
        out["length_penalty"] = float(out["length_penalty"])
    return out


def config_label(config: dict) -> str:
    """A readable, sorted ``key=value`` label (the ``identical_to`` metric)."""
    return " ".join(f"{k}={config[k]}" for k in sorted(config))


def plan_of(candidates: dict) -> dict:
    """The searched values a shared pass must cover: ``{"grid": {name: [values]}, "continuous": [names],
    "ranges": {name: [low, high]}}`` (``ranges`` only when a parameter is continuous).

    Args:
        candidates: each searched parameter's values (a list) or ``(low, high)`` range (continuous).
    """
    grid = {k: list(v) for k, v in candidates.items() if isinstance(v, list)}
    plan: dict = {"grid": grid, "continuous": sorted(k for k in candidates if k not in grid)}
    if plan["continuous"]:
        plan["ranges"] = {k: [float(v) for v in candidates[k]] for k in plan["continuous"]}
    return plan


def horizon(plan: dict, own: dict) -> tuple[list[dict], bool]:
    """``(configs, to_end)``: how long a beam pass of ``own`` must run so that its record covers every
    ``length_penalty`` of the plan's continuous range: until the range's upper end would stop, for each
    ``early_stopping`` of the plan (``configs``), or to the end when the range has no finite upper end.

    Why the upper end suffices (transformers 5.23, ``_check_early_stop_heuristic``): a batch item stops taking
    hypotheses once the best running score ``r`` divided by ``c ** lp`` (``c``: the current length; the max length
    for ``"never"`` and ``lp > 0``) is no better than the worst of its ``num_beams`` kept finished scores
    ``s_i / L_i ** lp``. With ``r, s_i < 0`` and ``L_i <= c``, candidate ``i`` passes that test iff
    ``(c / L_i) ** lp <= |r| / |s_i|``, which holds for every ``lp`` below a threshold; so the test holds at a step
    for a down-set of ``lp``, and a pass stops no later for a smaller ``lp``. ``early_stopping=True`` stops once
    every item has ``num_beams`` finished hypotheses, whatever ``lp``. Float rounding can flip a comparison right at
    a threshold: the replay checks coverage step by step, and a config it does not cover is decoded.
    """
    if "length_penalty" not in plan.get("continuous", []):
        return [], False
    high = (plan.get("ranges") or {}).get("length_penalty", [None, math.inf])[1]
    if high is None or not math.isfinite(high):
        return [], True
    stopping = [{"early_stopping": es} for es in plan["grid"]["early_stopping"]] if "early_stopping" in plan[
        "grid"
    ] else [{}]  # fmt: skip
    return [{**own, "length_penalty": float(high), **es} for es in stopping], False


def planned_configs(plan: dict, own: dict) -> list[dict]:
    """The searched configs of the plan's grid, or only ``own`` when a parameter is continuous or the grid is huge."""
    grid = plan.get("grid") or {}
    if plan.get("continuous") or not grid or math.prod(len(v) for v in grid.values()) > MAX_PLANNED:
        return [own]
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def source_batches(tokenizer, sources: list[str], batch_size: int, max_length: int) -> list[tuple[list[int], dict]]:
    """Fixed batches: ``(indices, tokenized batch)`` with the sources sorted by length (stable).

    Keep them fixed between a pass and any comparison: padding changes scores by ~1e-6.
    """
    lengths = [len(ids) for ids in tokenizer(sources, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(sources)), key=lambda i: lengths[i])
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        inputs = tokenizer(
            [sources[i] for i in chunk], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        batches.append((chunk, {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}))
    return batches


__all__ = [
    "MAX_PLANNED",
    "PASS_FREE",
    "REPLAYED",
    "horizon",
    "config_label",
    "plain_args",
    "plan_of",
    "planned_configs",
    "source_batches",
]
