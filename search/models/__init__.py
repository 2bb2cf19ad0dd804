"""Seq2seq models and tokenizers: local directories, Hub ids, storage URIs, or small models built from a config.

``build`` loads or builds them; ``hub`` resolves Hub ids (``org/name[@revision]``) through the Hub cache.
torch and transformers are imported inside the functions: validating a spec must not import them.
"""

from search.models.build import (
    ARCHS,
    MODEL_DEFAULTS,
    build_model,
    cached_tokenizer,
    check_loadable,
    fetch_model,
    load_pretrained,
    local_model,
    model_config,
    set_generation_defaults,
    tokenizer_cache_key,
    train_tokenizer,
    validate_model,
)
from search.models.hub import HubModel, locate_model

__all__ = [
    "ARCHS",
    "MODEL_DEFAULTS",
    "HubModel",
    "build_model",
    "cached_tokenizer",
    "check_loadable",
    "fetch_model",
    "load_pretrained",
    "local_model",
    "locate_model",
    "model_config",
    "set_generation_defaults",
    "tokenizer_cache_key",
    "train_tokenizer",
    "validate_model",
]
