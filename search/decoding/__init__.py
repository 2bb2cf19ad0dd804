"""Decoding many ``generate()`` configs at the cost of few: ``beam`` replays HF's finished-beam and stopping helpers so
that one beam pass per ``num_beams`` gives every (length_penalty, early_stopping) config exactly; ``configs`` says
which configs decode alike and which a pass covers; ``board`` shares decoded passes between the trials of a sweep on
any node (a Ray actor); ``cache`` keeps them on a machine's disk for later runs. Knows nothing of Tune, YAML or trial
configs.

Names are imported on first use (PEP 562): ``beam`` imports torch (~3 s), which the pass board's actor process and
the file cache never need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.lazy import lazy_names

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(
        ("Decoded", "canonical", "decode_configs", "decoding_kind", "stopping_rule"), "search.decoding.beam"
    ),
    **dict.fromkeys(("PassBoard", "create_board", "open_board", "share"), "search.decoding.board"),
    **dict.fromkeys(("DecodeCache", "digest", "model_fingerprint"), "search.decoding.cache"),
    **dict.fromkeys(
        ("config_label", "plain_args", "plan_of", "planned_configs", "source_batches"),
        "search.decoding.configs",
    ),
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time PEP 562's __getattr__ imports on first use
    from search.decoding.beam import Decoded, canonical, decode_configs, decoding_kind, stopping_rule
    from search.decoding.board import PassBoard, create_board, open_board, share
    from search.decoding.cache import DecodeCache, digest, model_fingerprint
    from search.decoding.configs import (
        config_label,
        plain_args,
        plan_of,
        planned_configs,
        source_batches,
    )


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = [
    "DecodeCache", "Decoded", "PassBoard", "canonical", "config_label", "create_board", "decode_configs",
    "decoding_kind", "digest", "model_fingerprint", "open_board", "plain_args", "plan_of", "planned_configs", "share",
    "source_batches", "stopping_rule",
]  # fmt: skip
