"""The ``decode`` trainable's side of the driver: its settings, their checks, and the hooks the runner calls before and
as the sweep starts (``prepare``, ``check``, ``start``, ``order_grid``). Imports neither torch nor transformers, so that
planning a sweep costs no model imports on the driver; the trials run ``search.trainables.decode``.
"""

from __future__ import annotations

import itertools
from typing import Any

from search.checks import require_int, require_positive_int
from search.decoding.board import create_board
from search.decoding.configs import PASS_FREE, plan_of
from search.errors import SpecError
from search.metrics import DEFAULT_METRICS, computed_metrics
from search.trainables.device import check_settings

PRIMARY_METRIC = {"name": "bleu", "goal": "maximize"}  # what a sweep without `metric:` ranks trials by

SETTING_DEFAULTS: dict[str, Any] = {
    "split": "dev",  # which split of `data` is decoded
    "limit": None,  # decode only the first N pairs (None: the whole split)
    "batch_size": 32,  # sentences per generate() call; part of the cache key (padding changes scores by ~1e-6)
    "max_new_tokens": 64,  # verses of <= 30 words take <= ~60 BPE tokens
    "max_source_length": 128,  # source tokens kept; longer sources are cut
    "generate": {},  # fixed generate() arguments for every trial (e.g. {min_length: 3})
    "metrics": list(DEFAULT_METRICS),  # scores reported (search.metrics.METRICS); bleu and chrf are cheap
    "sweep_metrics": None,  # set by the runner: the sweep's metric and columns, computed too when METRICS names them
    "seed": 0,  # initialises a model given as a mapping, and seeds sampling
    "device": "auto",  # the GPU Ray gave the trial (resources.gpu > 0), else the CPU; cpu or cuda force one
    "precision": "fp32",  # autocast dtype of generate(): bf16/fp16 are faster on GPUs; part of the cache key
    "train_size": 2000,  # training texts for the tokenizer of a model given as a mapping (smoke tests)
    "cache_dir": "./runs/.cache",  # shared decode results and tokenizers (the runner sets an absolute path)
    "spec_file": "<config>",  # named in the errors a trial raises (the runner sets the sweep file)
    "decode_plan": {},  # set by `prepare`: {"grid": {name: [values]}, "continuous": [names]}
    "pass_board": None,  # set by `start`: the sweep's pass board (None outside a sweep: the file cache's lock)
}


def prepare(settings: dict, candidates: dict) -> dict:
    """The settings the trials receive: ``decode_plan`` lists the searched values a shared pass must cover.

    Args:
        settings: the spec's ``settings`` (with ``cache_dir``).
        candidates: each searched parameter's values (a list) or ``(low, high)`` range (continuous).

    Example:
        >>> prepare({}, {"num_beams": [4, 8], "length_penalty": (0.5, 1.5)})["decode_plan"]
        {'grid': {'num_beams': [4, 8]}, 'continuous': ['length_penalty'], 'ranges': {'length_penalty': [0.5, 1.5]}}
    """
    return {**settings, "decode_plan": plan_of(candidates)}


def start(settings: dict) -> tuple[dict, Any]:
    """On the driver, once Ray is up: create the sweep's pass board (``search.decoding.board``). Returns the settings
    the trials receive (``pass_board`` names the board) and the board's handle, which the driver keeps until the sweep
    ends: the board lives as long as its handle.

    Example:
        >>> settings, board = start({"batch_size": 32})  # doctest: +SKIP
        >>> settings["pass_board"]  # doctest: +SKIP
        'search-passes-0f3c...'
    """
    name, board = create_board()
    return {**settings, "pass_board": name}, board


def order_grid(combos: list[dict]) -> list[dict]:
    """The order a grid's trials start in: round-robin over the groups of configs that share a beam pass (equal in
    all but ``configs.PASS_FREE``), the longest passes first (most ``num_beams``, then most ``max_new_tokens``), so that
    trials running at once lease different passes instead of waiting on one; later rounds only score shared passes.

    Example:
        >>> grid = [{"num_beams": nb, "length_penalty": lp} for nb in (4, 8) for lp in (0.6, 1.0)]
        >>> [(c["num_beams"], c["length_penalty"]) for c in order_grid(grid)]
        [(8, 0.6), (4, 0.6), (8, 1.0), (4, 1.0)]
    """
    groups: dict[str, list[dict]] = {}
    for combo in combos:
        groups.setdefault(repr(sorted((k, repr(v)) for k, v in combo.items() if k not in PASS_FREE)), []).append(combo)

    def length(group: list[dict]) -> tuple:
        first = group[0]
        return (-(first.get("num_beams") or 1), -(first.get("max_new_tokens") or 0))

    ordered = sorted(groups.values(), key=length)  # stable: equal passes keep the grid's order
    return [combo for turn in itertools.zip_longest(*ordered) for combo in turn if combo is not None]


def resolve_settings(config: dict, file: str | None = None) -> dict:
    """The trial's settings with every default filled in and checked (a SpecError naming ``file`` (default:
    ``settings.spec_file``) and ``settings.KEY``)."""
    file = file or (config.get("settings") or {}).get("spec_file") or SETTING_DEFAULTS["spec_file"]
    unknown = sorted(set(config.get("settings") or {}) - set(SETTING_DEFAULTS))
    if unknown:
        valid = ", ".join(SETTING_DEFAULTS)
        raise SpecError(file, f"settings.{unknown[0]}", f"unknown setting of the decode trainable; valid: {valid}")
    settings = {**SETTING_DEFAULTS, **(config.get("settings") or {})}
    for key in ("model", "data"):
        if key not in config:
            raise SpecError(file, key, f"missing; the decode trainable needs `{key}:`")
    for key in ("batch_size", "max_new_tokens", "max_source_length", "train_size"):
        require_positive_int(settings[key], file, f"settings.{key}")
    if settings["limit"] is not None:
        require_positive_int(settings["limit"], file, "settings.limit")
    require_int(settings["seed"], file, "settings.seed", 0)
    check_settings(settings, file)
    settings["metrics"] = list(computed_metrics(settings["metrics"], settings["sweep_metrics"], file))
    if not isinstance(settings["generate"], dict):
        got = settings["generate"]
        raise SpecError(file, "settings.generate", f"must be a mapping of generate() arguments, got {got!r}")
    return settings


def check(config: dict, searched_names: list[str], file: str) -> None:
    """Before a sweep: the settings are valid (any generate() argument may be searched), and the split to decode
    (and the training texts of a model built from a mapping) read as the trials will read them."""
    from search.corpora import load_pairs

    settings = resolve_settings(config, file)
    load_pairs(config["data"], settings["split"], file, limit=settings["limit"])
    if isinstance(config["model"], dict):
        load_pairs(config["data"], "train", file, limit=settings["train_size"])


__all__ = [
    "PRIMARY_METRIC", "SETTING_DEFAULTS", "check", "order_grid", "prepare", "resolve_settings", "start",
]  # fmt: skip
