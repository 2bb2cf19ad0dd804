"""The ``finetune`` trainable's config: its hyperparameters and settings, each default with its reason, and their checks.

Kept apart from the training code (and from torch) so that the runner can check a sweep's parameter names and
settings before any trial starts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from search.checks import is_int, is_number
from search.corpora import load_pairs
from search.errors import SpecError
from search.metrics import DEFAULT_METRICS, computed_metrics
from search.sections import SECTIONS, searched
from search.trainables.device import check_settings

HPARAM_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3,  # base LR of both groups; suits small models from scratch (pretrained ones: ~5e-5)
    "encoder_lr": None,  # base LR of the encoder group; None: learning_rate
    "decoder_lr": None,  # base LR of the decoder group (with shared embeddings and lm_head); None: learning_rate
    "freeze_encoder_steps": 0,  # the encoder gets no updates (nor weight decay) for this many first steps
    "weight_decay": 0.01,  # AdamW decoupled weight decay
    "warmup_steps": 100,  # linear warmup; DESIGN.md's small model trained well with 100
    "label_smoothing": 0.1,  # of the training objective only; train_loss and eval_loss are plain NLL
    "dropout": None,  # overrides the model's dropout; None keeps it
    "batch_tokens": 1500,  # padded tokens per batch, max(source, target) x sentences; DESIGN.md used ~1,500
    "max_grad_norm": 1.0,  # clip the gradient norm at this value; 0 disables clipping
    "seed": 0,  # model initialisation, batch order and dropout
}
PRIMARY_METRIC = {"name": "bleu", "goal": "maximize"}  # what a sweep without `metric:` ranks trials by

SETTING_DEFAULTS: dict[str, Any] = {
    "max_steps": 2000,  # training budget in optimizer steps; the LR decays linearly to 0 here
    "grad_accum": 1,  # micro-batches (of batch_tokens each) per optimizer step: larger batches in the same memory
    "device": "auto",  # the GPU Ray gave the trial (resources.gpu > 0), else the CPU; cpu or cuda force one
    "precision": "fp32",  # autocast dtype of training and eval: bf16, or fp16 (loss-scaled), is faster on GPUs
    "eval_every": 200,  # steps between reports (one report = one training_iteration)
    "eval_size": 200,  # first dev pairs scored per report: enough for a stable ranking, cheap to decode
    "metrics": list(DEFAULT_METRICS),  # scores reported at eval (search.metrics.METRICS); bleu and chrf are cheap
    "sweep_metrics": None,  # set by the runner: the sweep's metric and columns, computed too when METRICS names them
    "num_beams": 1,  # greedy eval decoding: several times cheaper than beam search, ranks trials alike
    "max_new_tokens": 64,  # verses of <= 30 words take <= ~60 BPE tokens
    "eval_batch_size": 64,  # sentences per forward pass / generate() call at eval
    "max_length": 128,  # tokens kept of each source and target; longer ones are cut
    "train_size": None,  # use only the first N training pairs (None: the whole split); smoke tests use a few hundred
    "cache_dir": "./runs/.cache",  # trained tokenizers shared by trials (the runner sets an absolute path)
    "output_dir": "./runs/finetune",  # checkpoints when called outside Tune (Tune stores them itself)
    "spec_file": "<config>",  # named in the errors a trial raises (the runner sets the sweep file)
}


@dataclass(frozen=True)
class FinetuneConfig:
    """A trial's config with every default filled in and checked."""

    model: Any
    data: dict
    settings: dict
    learning_rate: float
    encoder_lr: float | None
    decoder_lr: float | None
    freeze_encoder_steps: int
    weight_decay: float
    warmup_steps: int
    label_smoothing: float
    dropout: float | None
    batch_tokens: int
    max_grad_norm: float
    seed: int

    @property
    def base_lrs(self) -> tuple[float, float]:
        """Base learning rates of the (encoder, decoder) parameter groups."""
        enc = self.encoder_lr if self.encoder_lr is not None else self.learning_rate
        dec = self.decoder_lr if self.decoder_lr is not None else self.learning_rate
        return float(enc), float(dec)

    def hparams(self) -> dict[str, Any]:
        """The searched hyperparameters (no model, data or settings)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECTIONS}


def _check_number(file: str, key: str, value: Any, low: float, integer: bool, positive: bool) -> None:
    wrong_type = not (is_int(value) if integer else is_number(value))
    if wrong_type or value < low or (positive and value == low):
        kind = "an integer" if integer else "a number"
        rule = f"> {low}" if positive else f">= {low}"
        raise SpecError(file, key, f"must be {kind} {rule}, got {value!r}")


def resolve_config(config: dict, file: str | None = None) -> FinetuneConfig:
    """Fill in defaults and check a flat trial config.

    Raises:
        SpecError: for an unknown key, or a value of the wrong type or range, naming ``file`` (default: the
            ``settings.spec_file`` the runner sets).
    """
    file = file or (config.get("settings") or {}).get("spec_file") or SETTING_DEFAULTS["spec_file"]
    unknown = sorted(set(searched(config)) - set(HPARAM_DEFAULTS))
    if unknown:
        valid = ", ".join([*HPARAM_DEFAULTS, *sorted(SECTIONS)])
        raise SpecError(file, unknown[0], f"unknown finetune parameter; valid ones are {valid}")
    settings = dict(config.get("settings") or {})
    unknown = sorted(set(settings) - set(SETTING_DEFAULTS))
    if unknown:
        raise SpecError(
            file, f"settings.{unknown[0]}", f"unknown setting; valid ones are {', '.join(SETTING_DEFAULTS)}"
        )
    settings = {**SETTING_DEFAULTS, **{k: v for k, v in settings.items() if v is not None or k == "train_size"}}
    hp = {**HPARAM_DEFAULTS, **searched(config)}
    counts = ("max_steps", "grad_accum", "eval_every", "eval_size", "num_beams", "max_new_tokens", "eval_batch_size")
    for key in (*counts, "max_length"):
        _check_number(file, f"settings.{key}", settings[key], 0, integer=True, positive=True)
    check_settings(settings, file)
    settings["metrics"] = list(computed_metrics(settings["metrics"], settings["sweep_metrics"], file))
    if settings["train_size"] is not None:
        _check_number(file, "settings.train_size", settings["train_size"], 0, integer=True, positive=True)
    for key in ("learning_rate", "encoder_lr", "decoder_lr"):
        if hp[key] is not None:
            _check_number(file, key, hp[key], 0, integer=False, positive=True)
    for key in ("weight_decay", "max_grad_norm", "label_smoothing"):
        _check_number(file, key, hp[key], 0, integer=False, positive=False)
    for key in ("freeze_encoder_steps", "warmup_steps", "seed"):
        _check_number(file, key, hp[key], 0, integer=True, positive=False)
    _check_number(file, "batch_tokens", hp["batch_tokens"], 0, integer=True, positive=True)
    if hp["label_smoothing"] >= 1:
        raise SpecError(file, "label_smoothing", f"must be < 1, got {hp['label_smoothing']!r}")
    if hp["dropout"] is not None:
        _check_number(file, "dropout", hp["dropout"], 0, integer=False, positive=False)
        if hp["dropout"] >= 1:
            raise SpecError(file, "dropout", f"must be < 1, got {hp['dropout']!r}")
    if config.get("model") is None:
        raise SpecError(file, "model", "is required: a local model directory or a mapping with 'arch'")
    return FinetuneConfig(model=config["model"], data=dict(config.get("data") or {}), settings=settings, **hp)


def check(config: dict, searched_names: list[str], file: str) -> None:
    """Before a sweep: every searched name is a finetune hyperparameter, the settings and constants are valid, and
    the train and dev splits read as the trials will read them."""
    for name in searched_names:
        if name not in HPARAM_DEFAULTS:
            valid = ", ".join(HPARAM_DEFAULTS)
            raise SpecError(file, f"parameters.{name}", f"unknown finetune parameter; valid ones are {valid}")
    cfg = resolve_config(config, file)
    load_pairs(cfg.data, "train", file, limit=cfg.settings["train_size"])  # read as the trials will
    load_pairs(cfg.data, "dev", file, limit=cfg.settings["eval_size"])
