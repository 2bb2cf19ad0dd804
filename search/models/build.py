"""Seq2seq model and tokenizer: a local or Hub model, or a small model built from a config.

A spec's ``model:`` is either a string (any local ``AutoModelForSeq2SeqLM`` directory with its tokenizer, a Hub id
``org/name[@revision]`` (``search.models.hub``), or an ``s3://`` URI of a directory) or a
mapping such as ``{arch: bart, d_model: 128, layers: 2, heads: 4, ffn: 512, vocab_size: 2000}``. For a mapping, a
byte-level BPE tokenizer is trained on the training texts with the ``tokenizers`` library, saved as a regular
``PreTrainedTokenizerFast`` and cached under ``settings["cache_dir"]`` by a content hash, so that every trial and run
with the same data and vocabulary reuses it.

torch and transformers are imported inside the functions: validating a spec must not import them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.checks import is_number, require_positive_int
from search.errors import SpecError
from search.files import publish_dir, staged_dir
from search.models.hub import HubModel
from search.storage import Remote, is_uri

ARCHS = ("bart", "marian", "t5")
# Ids fixed by the order of these special tokens in every tokenizer trained here.
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
# 256 byte symbols + the special tokens: a smaller vocabulary cannot hold the byte-level alphabet.
MIN_VOCAB = 300
# Bump when the way tokenizers are trained changes, so that old cache entries are not reused.
TOKENIZER_FORMAT = 1

MODEL_DEFAULTS: dict[str, Any] = {
    "d_model": 128,  # hidden size; DESIGN.md's 1.45M-parameter model reached BLEU 5.6 in 9 min on 2 threads
    "layers": 2,  # encoder and decoder layers, unless encoder_layers / decoder_layers say otherwise
    "encoder_layers": None,
    "decoder_layers": None,
    "heads": 4,  # attention heads; must divide d_model
    "ffn": 512,  # feed-forward width, 4 x d_model as in the original transformer
    "vocab_size": 2000,  # shared source/target BPE vocabulary
    "dropout": 0.1,  # overridden by a searched top-level ``dropout``
    "max_length": 128,  # positions, truncation of inputs and labels, and generate()'s max_length
}
_INT_KEYS = ("d_model", "layers", "encoder_layers", "decoder_layers", "heads", "ffn", "vocab_size", "max_length")


def validate_model(model: Any, file: str, base_dir: str | Path | None = None) -> None:
    """Cheap checks of a spec's ``model:`` section (no torch import).

    Args:
        model: a path string, a Hub id (``org/name`` or ``org/name@revision``; a directory of that name wins), a
            storage URI, or a mapping with ``arch`` and size keys (see ``MODEL_DEFAULTS``).
        file: the spec file, named in errors.
        base_dir: directory a relative path is resolved against (default: the spec file's directory).

    Raises:
        SpecError: naming ``model`` or ``model.<key>``, the rule, the bad value and the fix.
    """
    if is_uri(model):
        _check_remote_model(model, file)
        return
    if isinstance(model, str):
        path = Path(model)
        if not path.is_absolute():
            path = Path(base_dir if base_dir is not None else Path(file).parent) / path
        if not path.is_dir():
            hub = HubModel.parse(model)
            if hub is None:
                message = f"must be a local model directory or a Hub id org/name, got {model!r} (no such directory)"
                raise SpecError(file, "model", message)
            hub.check(file)
            return
        if not (path / "config.json").is_file():
            raise SpecError(file, "model", f"{model!r} has no config.json; give a directory written by save_pretrained")
        return
    if not isinstance(model, dict):
        raise SpecError(file, "model", f"must be a path, a Hub id or a mapping with 'arch', got {type(model).__name__}")
    arch = model.get("arch")
    if arch not in ARCHS:
        raise SpecError(file, "model.arch", f"must be one of {', '.join(ARCHS)}, got {arch!r}")
    unknown = sorted(set(model) - set(MODEL_DEFAULTS) - {"arch"})
    if unknown:
        valid = ", ".join(["arch", *MODEL_DEFAULTS])
        raise SpecError(file, f"model.{unknown[0]}", f"unknown key; valid keys are {valid}")
    for key in _INT_KEYS:
        value = model.get(key)
        if value is None:
            continue
        require_positive_int(value, file, f"model.{key}")
    cfg = model_config(model)
    if cfg["d_model"] % cfg["heads"]:
        raise SpecError(file, "model.heads", f"must divide d_model, got heads={cfg['heads']} d_model={cfg['d_model']}")
    if cfg["vocab_size"] < MIN_VOCAB:
        raise SpecError(file, "model.vocab_size", f"must be >= {MIN_VOCAB} for byte-level BPE, got {cfg['vocab_size']}")
    dropout = cfg["dropout"]
    if not is_number(dropout) or not 0 <= dropout < 1:
        raise SpecError(file, "model.dropout", f"must be a number in [0, 1), got {dropout!r}")


def _check_remote_model(uri: str, file: str) -> None:
    try:
        found = Remote.parse(uri).child("config.json").exists()
    except OSError as error:  # no such bucket, no credentials, unreachable endpoint
        raise SpecError(file, "model", f"{uri}: {' '.join(str(error).split())}") from None
    if not found:
        raise SpecError(file, "model", f"{uri} has no config.json; give a directory written by save_pretrained")


def fetch_model(uri: str, cache_dir: str | Path) -> Path:
    """A model directory on remote storage (``s3://bucket/models/m``) as a local one: downloaded into
    ``cache_dir/models/<scheme>/<path>`` (new and changed files only), one process of the node at a time."""
    from filelock import FileLock

    remote = Remote.parse(uri)
    local = Path(cache_dir) / "models" / remote.scheme / remote.path
    local.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{local}.lock"):
        remote.mirror(local)
    return local


def local_model(model: str | Path | dict, cache_dir: str | Path, file: str = "<spec>") -> str | dict:
    """``model`` as a local directory a trial loads and hashes: a URI fetched into ``cache_dir``, a Hub id resolved
    to its snapshot in the Hub cache (downloaded there first when online); a local path or a mapping as it is."""
    if is_uri(model):
        return str(fetch_model(str(model), cache_dir))
    if isinstance(model, str | Path) and not Path(model).is_dir() and (hub := HubModel.parse(str(model))):
        return str(hub.local_dir(file))
    return str(model) if isinstance(model, Path) else model


def _pretrained_source(model: str | Path) -> tuple[str, dict]:
    """``(name or path, from_pretrained keyword arguments)`` of a local directory or a Hub reference."""
    hub = None if Path(model).is_dir() else HubModel.parse(str(model))
    if hub is None:
        return str(model), {"local_files_only": True}
    snapshot = hub.cached_snapshot()
    if snapshot is not None:
        return str(snapshot), {"local_files_only": True}
    return hub.repo_id, {"revision": hub.revision}  # online: config and tokenizer files only are downloaded


def check_loadable(path: str | Path, file: str) -> None:
    """A model's config and tokenizer load (no weights are read), or one SpecError naming ``model``.

    ``path`` is a local directory or a Hub reference (``org/name[@revision]``). Catches a corrupt or foreign
    ``config.json`` and a missing tokenizer before any trial starts.
    """
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    source, kwargs = _pretrained_source(path)
    for what, loader in (("config.json", AutoConfig), ("tokenizer", AutoTokenizer)):
        try:
            loader.from_pretrained(source, **kwargs)
        except Exception as error:  # noqa: BLE001 - whatever the loader raises, the directory is the cause
            cause = " ".join(str(error).split())[:200]
            raise SpecError(
                file,
                "model",
                f"{path}: its {what} does not load ({type(error).__name__}: {cause}); "
                "give a directory written by save_pretrained",
            ) from None


def model_config(model: dict) -> dict:
    """A model mapping with every default filled in (``encoder_layers``/``decoder_layers`` resolved)."""
    cfg = {**MODEL_DEFAULTS, **model}
    cfg["encoder_layers"] = cfg["encoder_layers"] or cfg["layers"]
    cfg["decoder_layers"] = cfg["decoder_layers"] or cfg["layers"]
    return cfg


def texts_fingerprint(texts: list[str]) -> str:
    """Content hash of a list of texts (order matters)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def tokenizer_cache_key(texts: list[str], vocab_size: int, arch: str) -> str:
    """Cache key of a trained tokenizer: data fingerprint, vocabulary size, architecture and format version."""
    key = f"{TOKENIZER_FORMAT}:{arch}:{vocab_size}:{texts_fingerprint(texts)}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def train_tokenizer(texts: list[str], vocab_size: int, arch: str):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Every encoded sequence ends with ``</s>`` (BART's also starts with ``<s>``), as the model families expect.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    single = "<s> $A </s>" if arch == "bart" else "$A </s>"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("<s>", BOS_ID), ("</s>", EOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


def cached_tokenizer(texts: list[str], vocab_size: int, arch: str, cache_dir: str | Path):
    """The tokenizer for (texts, vocab_size, arch), trained once and shared through ``cache_dir``.

    A file lock makes concurrent trials wait for the one that trains it; the directory appears atomically.
    """
    from filelock import FileLock
    from transformers import AutoTokenizer

    root = Path(cache_dir) / "tokenizers"
    root.mkdir(parents=True, exist_ok=True)
    target = root / tokenizer_cache_key(texts, vocab_size, arch)
    with FileLock(str(target) + ".lock"):
        if not target.is_dir():
            with staged_dir(root, target.name) as staged:
                train_tokenizer(texts, vocab_size, arch).save_pretrained(staged)
                publish_dir(staged, target)
    return AutoTokenizer.from_pretrained(target, local_files_only=True)


def _hf_config(cfg: dict):
    """The transformers config of a model mapping (ids fixed by ``SPECIAL_TOKENS``)."""
    from transformers import BartConfig, MarianConfig, T5Config

    arch, d_model, heads, ffn = cfg["arch"], cfg["d_model"], cfg["heads"], cfg["ffn"]
    enc, dec, vocab, dropout = cfg["encoder_layers"], cfg["decoder_layers"], cfg["vocab_size"], cfg["dropout"]
    if arch == "t5":
        return T5Config(
            vocab_size=vocab, d_model=d_model, d_kv=d_model // heads, d_ff=ffn, num_layers=enc,
            num_decoder_layers=dec, num_heads=heads, dropout_rate=dropout, feed_forward_proj="relu",
            pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID,
        )  # fmt: skip
    common = dict(
        vocab_size=vocab, d_model=d_model, encoder_layers=enc, decoder_layers=dec, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, dropout=dropout,
        max_position_embeddings=cfg["max_length"], pad_token_id=PAD_ID, eos_token_id=EOS_ID,
        forced_eos_token_id=None,
    )  # fmt: skip
    if arch == "marian":
        # Marian starts decoding from <pad>, like the Helsinki-NLP models.
        return MarianConfig(**common, decoder_start_token_id=PAD_ID, decoder_vocab_size=vocab)
    # BART starts decoding from </s>, like facebook/bart-*.
    return BartConfig(**common, bos_token_id=BOS_ID, decoder_start_token_id=EOS_ID)


def set_generation_defaults(model, tokenizer, max_length: int | None = None) -> None:
    """Make ``generate()`` sane for small models: special ids from the config, greedy, bounded length."""
    gen = model.generation_config
    config = model.config
    gen.decoder_start_token_id = config.decoder_start_token_id
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.pad_token_id
    gen.eos_token_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else config.eos_token_id
    if gen.bos_token_id is None:
        gen.bos_token_id = getattr(config, "bos_token_id", None)
    if max_length is not None:
        gen.max_length = max_length


def _dropout_kwargs(config, dropout: float | None) -> dict:
    """Config override that sets a model's dropout (T5 calls it ``dropout_rate``)."""
    if dropout is None:
        return {}
    return {"dropout_rate" if hasattr(config, "dropout_rate") else "dropout": float(dropout)}


def load_pretrained(path: str | Path, dropout: float | None = None):
    """Load a local seq2seq model directory and its tokenizer (``local_files_only``); ``dropout`` overrides.

    Returns:
        ``(model, tokenizer)``
    """
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True, **_dropout_kwargs(config, dropout))
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    set_generation_defaults(model, tokenizer)
    return model, tokenizer


def build_model(
    model: str | dict,
    texts: Callable[[], list[str]] | None = None,
    cache_dir: str | Path = "./runs/.cache",
    dropout: float | None = None,
):
    """The model and tokenizer a spec's ``model:`` describes.

    Args:
        model: a local model directory, a Hub id (``org/name[@revision]``, from the Hub cache), a URI of a
            directory (``s3://...``: fetched into ``cache_dir``), or a mapping (``validate_model`` lists the keys).
        texts: returns the training texts (sources and targets) a new tokenizer is trained on; only called for a
            mapping, and the tokenizer is trained only when the cache has none for these texts.
        cache_dir: where trained tokenizers are shared.
        dropout: overrides the model's dropout (a searched hyperparameter).

    Returns:
        ``(model, tokenizer)``; a mapping gives freshly initialised weights (seed torch first).

    Example:
        >>> import tempfile
        >>> sizes = {"arch": "bart", "d_model": 64, "vocab_size": 300}
        >>> model, tok = build_model(sizes, lambda: ["hola", "hello"], cache_dir=tempfile.mkdtemp())
        >>> tok("hola")["input_ids"][-1] == tok.eos_token_id
        True
    """
    model = local_model(model, cache_dir)
    if isinstance(model, str):
        return load_pretrained(model, dropout)
    from transformers import AutoModelForSeq2SeqLM

    validate_model(model, "<config>")
    if texts is None:
        raise ValueError("a model built from a config needs training texts for its tokenizer")
    cfg = model_config(model)
    if dropout is not None:
        cfg["dropout"] = float(dropout)
    tokenizer = cached_tokenizer(texts(), cfg["vocab_size"], cfg["arch"], cache_dir)
    tokenizer.model_max_length = cfg["max_length"]
    hf_model = AutoModelForSeq2SeqLM.from_config(_hf_config(cfg))
    set_generation_defaults(hf_model, tokenizer, max_length=cfg["max_length"])
    return hf_model, tokenizer


__all__ = [
    "ARCHS",
    "MODEL_DEFAULTS",
    "build_model",
    "cached_tokenizer",
    "check_loadable",
    "fetch_model",
    "load_pretrained",
    "local_model",
    "model_config",
    "set_generation_defaults",
    "tokenizer_cache_key",
    "train_tokenizer",
    "validate_model",
]
