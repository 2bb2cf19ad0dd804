"""The ``finetune`` trainable: train a seq2seq model, report dev loss and scores, checkpoint every report.

Searched hyperparameters arrive at the top level of the config (``HPARAM_DEFAULTS``); ``model``, ``data`` and
``settings`` (``SETTING_DEFAULTS``) are fixed for the sweep. One report is one ``training_iteration`` for ASHA and PBT.

Each optimizer step sums the gradients of ``settings.grad_accum`` micro-batches (see ``train_step``). The trial computes
on the device and in the precision ``search.trainables.device`` resolves from ``settings.device``/``precision``.

PBT restarts an exploited trial with the donor's checkpoint and a mutated config. ``restore`` loads the donor's weights,
optimizer state and step, and only then applies the current config: the learning rates of the optimizer's parameter
groups are recomputed from the config's base rates at the restored step (the LR schedule is a pure function of the
step, so no scheduler state can carry the donor's base rates over, the bug of transformers issues 10247 and 22434).
fp16's loss-scaler state travels with the checkpoint like the optimizer's.
"""

from __future__ import annotations

import random
import resource
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from search.metrics import corpus_scores
from search.models import build_model, load_pretrained
from search.trainables import LAST_REPORT
from search.trainables.checkpoints import load_training_state, model_dir, save_checkpoint
from search.trainables.common import use_trial_cpus
from search.trainables.device import Compute
from search.trainables.finetune_config import FinetuneConfig, resolve_config
from search.trainables.outputs import write_translations

# ---------------------------------------------------------------- batches


def token_batches(lengths: list[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches: sentences of similar length together, padded size <= ``batch_tokens``.

    Args:
        lengths: per example, max(source tokens, target tokens).
        batch_tokens: bound on sentences x longest length in a batch (one longer sentence makes its own batch).
        rng: shuffles ties within a length and the order of the batches.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])  # stable: equal lengths stay shuffled
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(model, pad_id: int, sources: list[list[int]], targets: list[list[int]]) -> dict[str, torch.Tensor]:
    """Pad a batch on the CPU: ``input_ids``/``attention_mask`` (B, S), ``labels`` (B, T) with -100 pads,
    ``decoder_input_ids``."""
    width = max(map(len, sources))
    input_ids = torch.full((len(sources), width), pad_id, dtype=torch.long)
    for row, ids in enumerate(sources):
        input_ids[row, : len(ids)] = torch.tensor(ids)
    labels = torch.full((len(targets), max(map(len, targets))), -100, dtype=torch.long)
    for row, ids in enumerate(targets):
        labels[row, : len(ids)] = torch.tensor(ids)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != pad_id).long(),
        "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels),
        "labels": labels,
    }


def token_losses(model, batch: dict[str, torch.Tensor], label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-target-token (objective, plain NLL), each of shape (N,) over the non-pad labels."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logp = model(**inputs).logits.float().log_softmax(-1)  # (B, T, V)
    labels = batch["labels"]
    mask = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask]
    if not label_smoothing:
        return nll, nll
    smooth = -logp.mean(-1)[mask]  # same formula as torch's cross_entropy(label_smoothing=...)
    return (1 - label_smoothing) * nll + label_smoothing * smooth, nll


# ---------------------------------------------------------------- optimizer and schedule


def param_groups(model) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(encoder, decoder) trainable parameters.

    The shared token embeddings and the lm_head (tied to them in BART/Marian/T5) belong to the decoder group, even
    though the encoder uses them too: they are the output layer the decoder's loss trains directly, and freezing or
    slowing the encoder must not freeze the output vocabulary.
    """
    shared = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    encoder_ids = {id(p) for p in model.get_encoder().parameters()} - shared
    encoder, decoder = [], []
    for p in model.parameters():  # each tied parameter appears once
        if p.requires_grad:
            (encoder if id(p) in encoder_ids else decoder).append(p)
    return encoder, decoder


def make_optimizer(model, cfg: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW with two parameter groups, ``[encoder, decoder]``; their LRs are set by ``apply_hparams``."""
    encoder, decoder = param_groups(model)
    groups = [{"params": encoder, "name": "encoder"}, {"params": decoder, "name": "decoder"}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.base_lrs[1], weight_decay=cfg.weight_decay)
    apply_hparams(optimizer, cfg, step=0)
    return optimizer


def lr_factor(step: int, warmup_steps: int, max_steps: int) -> float:
    """Multiplier of the base LRs for the update after ``step`` finished steps: linear warmup, then linear decay."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))


def apply_hparams(optimizer: torch.optim.Optimizer, cfg: FinetuneConfig, step: int) -> tuple[float, float]:
    """Set each group's LR (and weight decay) from ``cfg`` at ``step``; returns the (encoder, decoder) LRs.

    The encoder LR is 0 while the encoder is frozen (its gradients are also dropped, see ``train``).
    """
    factor = lr_factor(step, cfg.warmup_steps, cfg.settings["max_steps"])
    enc_base, dec_base = cfg.base_lrs
    lrs = (0.0 if step < cfg.freeze_encoder_steps else enc_base * factor, dec_base * factor)
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
        group["weight_decay"] = cfg.weight_decay
    return lrs


# ---------------------------------------------------------------- state, checkpoints, PBT restore


@dataclass
class TrainState:
    """Everything a checkpoint restores; ``start_from``/``start_step`` say where this run of the trial began."""

    model: Any  # on compute.device
    tokenizer: Any
    optimizer: torch.optim.AdamW
    compute: Compute
    scaler: torch.amp.GradScaler  # enabled for fp16 only
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    start_from: str = ""  # trial id that wrote the checkpoint this run started from ("" when trained from scratch)
    start_step: int = 0


def init_state(cfg: FinetuneConfig, train_texts: list[str]) -> TrainState:
    """A fresh model (seeded) on the trial's device, its tokenizer (trained or cached), optimizer and scaler."""
    compute = Compute.from_settings(cfg.settings)
    torch.manual_seed(cfg.seed)
    cache_dir = cfg.settings["cache_dir"]
    model, tokenizer = build_model(cfg.model, lambda: train_texts, cache_dir=cache_dir, dropout=cfg.dropout)
    model.to(compute.device).train()
    return TrainState(model, tokenizer, make_optimizer(model, cfg), compute, compute.grad_scaler())


def save_state(state: TrainState, cfg: FinetuneConfig, directory: Path, trial_id: str | None) -> None:
    """Write a checkpoint that ``restore`` reads (layout in ``search.checkpoints``)."""
    training_state = {
        "step": state.step,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(),  # fp16's loss scale and growth tracker; {} when disabled
        # The LR schedule is a function of the step; its parameters are kept for the record only.
        "schedule": {"kind": "linear", "warmup_steps": cfg.warmup_steps, "max_steps": cfg.settings["max_steps"]},
        "rng": state.compute.rng_state(),
        "trial_id": trial_id,
        # For the record: restore uses the current settings' device and precision.
        "device": str(state.compute.device),
        "precision": state.compute.precision.name,
    }
    save_checkpoint(directory, state.model, state.tokenizer, training_state, cfg.hparams())


def restore(cfg: FinetuneConfig, directory: Path, trial_id: str | None) -> TrainState:
    """Resume from a checkpoint, possibly another trial's (PBT exploit), under the current ``cfg``.

    Order matters: the donor's weights, optimizer state and step are loaded first; then the current config's
    hyperparameters are applied (dropout when the model is built, LRs and weight decay after the optimizer state).
    Whatever device wrote the checkpoint, its state lands on this trial's device.
    """
    compute = Compute.from_settings(cfg.settings)
    model, tokenizer = load_pretrained(model_dir(directory), dropout=cfg.dropout)
    model.to(compute.device).train()
    saved = load_training_state(directory)
    optimizer = make_optimizer(model, cfg)
    # Adam moments and step counts (moved onto the parameters' device), and the donor's LRs...
    optimizer.load_state_dict(saved["optimizer"])
    apply_hparams(optimizer, cfg, saved["step"])  # ...which this config's schedule replaces at the restored step
    scaler = compute.grad_scaler()
    if saved.get("scaler"):  # absent from older checkpoints, {} from a disabled scaler: start a fresh one
        scaler.load_state_dict(saved["scaler"])
    if saved["trial_id"] == trial_id:
        compute.set_rng_state(saved["rng"])  # same trial resumed: continue exactly
    else:
        # A PBT clone must not replay the donor's dropout masks (seeds the CPU's and every GPU's generator).
        torch.manual_seed(zlib.crc32(f"{cfg.seed}:{trial_id}:{saved['step']}".encode()))
    return TrainState(
        model, tokenizer, optimizer, compute, scaler, saved["step"], saved["epoch"], saved["batch_in_epoch"],
        start_from=saved["trial_id"] or "", start_step=saved["step"],
    )  # fmt: skip


# ---------------------------------------------------------------- evaluation and the training loop


def encode(tokenizer, sources: list[str], targets: list[str], max_length: int) -> tuple[list, list]:
    """Token ids of sources and targets (each ending with ``</s>``), cut at ``max_length``."""
    src = tokenizer(sources, truncation=True, max_length=max_length)["input_ids"]
    tgt = tokenizer(text_target=targets, truncation=True, max_length=max_length)["input_ids"]
    return src, tgt


@torch.no_grad()
def evaluate(
    state: TrainState, cfg: FinetuneConfig, src: list, tgt: list, references: list[str]
) -> tuple[dict, list[str]]:
    """Plain NLL per target token and the corpus scores (``settings.metrics``) of ``generate()`` on the dev subset.

    Returns:
        ``({"eval_loss", "bleu", "bleu_signature", ...}, hypotheses)``: each metric with its signature.
    """
    model, settings, compute = state.model, cfg.settings, state.compute
    model.eval()
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    hypotheses = [""] * len(src)
    nll_sum, tokens = 0.0, 0
    for start in range(0, len(order), settings["eval_batch_size"]):
        chunk = order[start : start + settings["eval_batch_size"]]
        pad_id = state.tokenizer.pad_token_id
        batch = compute.to_device(collate(model, pad_id, [src[i] for i in chunk], [tgt[i] for i in chunk]))
        with compute.autocast():
            _, nll = token_losses(model, batch, 0.0)
            # max_length=None: the model's own max_length would clash with max_new_tokens (and warn every call).
            out = model.generate(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=settings["num_beams"],
                max_new_tokens=settings["max_new_tokens"], max_length=None, do_sample=False,
            )  # fmt: skip
        nll_sum, tokens = nll_sum + nll.sum().item(), tokens + nll.numel()
        for i, text in zip(chunk, state.tokenizer.batch_decode(out.cpu(), skip_special_tokens=True), strict=True):
            hypotheses[i] = text.strip()
    model.train()
    scores = corpus_scores(hypotheses, references, settings["metrics"])
    return {"eval_loss": nll_sum / max(1, tokens), **scores}, hypotheses


def train_step(
    state: TrainState, cfg: FinetuneConfig, micro_batches: list[dict[str, torch.Tensor]]
) -> tuple[torch.Tensor, tuple]:
    """One optimizer update on the union of ``micro_batches`` (``settings.grad_accum`` of them, on the CPU).

    The objective is normalised per target token over the accumulated batch: each micro-batch's backward pass adds
    the gradient of (sum of its token losses) / (target tokens of all the micro-batches), so the update equals one
    step on their union whatever their token counts (up to the float noise of padding them apart).

    Returns:
        The plain NLL of every target token of the micro-batches, (N,), and the (encoder, decoder) LRs used.
    """
    compute = state.compute
    lrs = apply_hparams(state.optimizer, cfg, state.step)
    tokens = sum(int((batch["labels"] != -100).sum()) for batch in micro_batches)
    state.optimizer.zero_grad(set_to_none=True)
    nlls = []
    for batch in micro_batches:
        with compute.autocast():
            objective, nll = token_losses(state.model, compute.to_device(batch), cfg.label_smoothing)
        state.scaler.scale(objective.sum() / tokens).backward()  # backward outside autocast, as torch advises
        nlls.append(nll.detach())
    if state.step < cfg.freeze_encoder_steps:
        for p in state.optimizer.param_groups[0]["params"]:  # the encoder group
            p.grad = None  # AdamW skips parameters without gradient: no update, no weight decay
    if cfg.max_grad_norm:
        state.scaler.unscale_(state.optimizer)  # clip the true gradients, not fp16's scaled ones
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.max_grad_norm)
    state.scaler.step(state.optimizer)  # fp16: skipped when a gradient overflowed (the scale then shrinks)
    state.scaler.update()
    state.step += 1
    return torch.cat(nlls), lrs


@dataclass
class Meter:
    """Training NLL, tokens and seconds since the last report, and the process CPU time since ``cpu_start``."""

    nll_sum: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    lrs: tuple = (0.0, 0.0)
    cpu_start: float = field(default_factory=time.process_time)

    def metrics(self, state: TrainState, scores: dict) -> dict[str, Any]:
        return {
            "step": state.step,
            "train_loss": self.nll_sum / max(1, self.tokens),
            **scores,
            "lr_encoder": self.lrs[0],
            "lr_decoder": self.lrs[1],
            "tokens_per_s": self.tokens / max(self.seconds, 1e-9),  # target tokens per second of training only
            # CPU seconds of the trial's process since its previous report (the first: since this run of the trial
            # started, restore included); summed over a run's results it is the trial CPU time of the sweep
            "cpu_s": time.process_time() - self.cpu_start,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "start_from": state.start_from,
            "start_step": state.start_step,
            "device": str(state.compute.device),
            "precision": state.compute.precision.name,
        }


def train(
    cfg: FinetuneConfig,
    train_pairs,
    dev_pairs,
    report,
    checkpoint: Path | None,
    trial_id: str | None,
    translations_dir: Path | None = None,
) -> None:
    """Train until ``settings.max_steps``, calling ``report(metrics, save)`` every ``eval_every`` steps.

    Args:
        cfg: the resolved trial config.
        train_pairs, dev_pairs: objects with ``sources`` and ``references`` lists (``search.corpora.Pairs``).
        report: ``report(metrics, save)`` where ``save(directory)`` writes the checkpoint of this report.
        checkpoint: a checkpoint directory to resume from (this trial's, or a PBT donor's), or None.
        trial_id: this trial's id (None outside Tune); tells a resumed trial from an exploiting one.
        translations_dir: where each report's dev translations are written (``write_translations``), or None.
    """
    settings, references = cfg.settings, list(dev_pairs.references)
    meter = Meter()
    if checkpoint is not None:
        state = restore(cfg, checkpoint, trial_id)
    else:
        state = init_state(cfg, list(train_pairs.sources) + list(train_pairs.references))
    max_length = min(settings["max_length"], getattr(state.model.config, "max_position_embeddings", None) or 10**9)
    src, tgt = encode(state.tokenizer, train_pairs.sources, train_pairs.references, max_length)
    dev_src, dev_tgt = encode(state.tokenizer, dev_pairs.sources, references, max_length)
    lengths = [max(len(s), len(t)) for s, t in zip(src, tgt, strict=True)]
    batches = token_batches(lengths, cfg.batch_tokens, random.Random(f"{cfg.seed}:{state.epoch}"))

    def next_micro_batch() -> dict[str, torch.Tensor]:
        """The next micro-batch of the epoch (moving on to the next epoch at its end), collated."""
        nonlocal batches
        if state.batch_in_epoch >= len(batches):
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            batches = token_batches(lengths, cfg.batch_tokens, random.Random(f"{cfg.seed}:{state.epoch}"))
        chunk = batches[state.batch_in_epoch]
        state.batch_in_epoch += 1
        return collate(state.model, state.tokenizer.pad_token_id, [src[i] for i in chunk], [tgt[i] for i in chunk])

    while state.step < settings["max_steps"]:
        began = time.perf_counter()
        micro_batches = [next_micro_batch() for _ in range(settings["grad_accum"])]
        nll, meter.lrs = train_step(state, cfg, micro_batches)
        meter.seconds += time.perf_counter() - began
        meter.nll_sum, meter.tokens = meter.nll_sum + nll.sum().item(), meter.tokens + nll.numel()
        if state.step % settings["eval_every"] and state.step < settings["max_steps"]:
            continue
        scores, hypotheses = evaluate(state, cfg, dev_src, dev_tgt, references)
        if translations_dir is not None:
            write_translations(translations_dir, hypotheses, references)
        metrics, meter = meter.metrics(state, scores), Meter(lrs=meter.lrs)  # the checkpoint's CPU counts next
        metrics[LAST_REPORT] = state.step >= settings["max_steps"]  # PBT does not exploit a spent trial
        report(metrics, lambda directory: save_state(state, cfg, Path(directory), trial_id))


def _trial_id() -> str | None:
    from ray import tune

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside Tune the context warns and returns None
        return tune.get_context().get_trial_id()


def _tune_report(metrics: dict, save) -> None:
    import tempfile

    from ray import tune

    with tempfile.TemporaryDirectory() as directory:
        save(directory)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def run_trial(cfg: FinetuneConfig, train_pairs, dev_pairs) -> None:
    """Train with Tune's reporting and checkpoints inside a trial, or print and save locally outside Tune."""
    trial_id = _trial_id()
    if trial_id is None:
        output_dir = Path(cfg.settings["output_dir"])

        def report(metrics: dict, save) -> None:
            save(output_dir / f"checkpoint_{metrics['step']:06d}")
            print({k: v for k, v in metrics.items() if not k.endswith("_signature")}, flush=True)

        return train(cfg, train_pairs, dev_pairs, report, None, None, output_dir)
    from ray import tune

    # Tune runs a trial in its working directory; the runner syncs it to the trial's storage directory.
    translations_dir = Path.cwd()
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return train(cfg, train_pairs, dev_pairs, _tune_report, None, trial_id, translations_dir)
    with checkpoint.as_directory() as directory:
        return train(cfg, train_pairs, dev_pairs, _tune_report, Path(directory), trial_id, translations_dir)


def finetune(config: dict) -> None:
    """Ray Tune trainable: fine-tune ``config["model"]`` on ``config["data"]``, reporting every ``eval_every`` steps.

    Reports ``step, train_loss, eval_loss, bleu, bleu_signature, chrf, chrf_signature, lr_encoder, lr_decoder,
    tokens_per_s, cpu_s, peak_mem_mb, start_from, start_step, device, precision`` with a checkpoint each time
    (``start_from``/``start_step``: the trial and step whose checkpoint this run of the trial started from; "" and 0
    for a fresh start; ``device``: where it trained, e.g. ``cpu`` or ``cuda``). Outside
    Tune it prints the metrics and writes the checkpoints under ``settings.output_dir``.

    Example:
        >>> finetune({"model": {"arch": "bart"}, "data": {"corpus": "bible-en-es"}, "settings": {"max_steps": 100}})  # doctest: +SKIP
    """
    use_trial_cpus()
    from transformers.utils import logging as hf_logging

    from search.corpora import load_pairs

    hf_logging.disable_progress_bar()
    cfg = resolve_config(config)
    train_pairs = load_pairs(cfg.data, "train", cfg.settings["spec_file"], limit=cfg.settings["train_size"])
    dev_pairs = load_pairs(cfg.data, "dev", cfg.settings["spec_file"], limit=cfg.settings["eval_size"])
    run_trial(cfg, train_pairs, dev_pairs)
