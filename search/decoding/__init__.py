"""Decoding many ``generate()`` configs at the cost of few: ``beam`` replays HF's finished-beam and stopping helpers so
that one beam pass per ``num_beams`` gives every (length_penalty, early_stopping) config exactly; ``configs`` says
which configs decode alike and which a pass covers; ``cache`` shares decoded passes between trials and runs.
Knows nothing of Tune, YAML or trial configs.
"""

from search.decoding.beam import Decoded, decode_configs, decoding_kind, stopping_rule
from search.decoding.cache import DecodeCache, digest, model_fingerprint
from search.decoding.configs import canonical, config_label, plain_args, plan_of, planned_configs, source_batches

__all__ = [
    "DecodeCache", "Decoded", "canonical", "config_label", "decode_configs", "decoding_kind", "digest",
    "model_fingerprint", "plain_args", "plan_of", "planned_configs", "source_batches", "stopping_rule",
]  # fmt: skip
