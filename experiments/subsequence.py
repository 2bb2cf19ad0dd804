"""A user-defined trainable: a GRU encoder-decoder learns the integer "subsequence" code.

Input ``(idx, len, x_0..x_7)`` with digits ``x_i`` in 1..9; output ``x_idx..x_(idx+len-1)`` padded with 0 to 8
tokens. The task is generated on the fly, trains in seconds per epoch on one CPU thread, and its hyperparameters
(learning rates, teacher forcing, size, dropout, clipping) matter, which makes it an honest example of a user's
own function under ASHA or PBT. It knows nothing of the spec or the runner: it takes one flat config dict and
reports with ``ray.tune.report``.

Example:
    >>> from subsequence import run_locally
    >>> history = run_locally({"hidden_size": 64, "layers": 1}, epochs=1)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import torch
from ray import tune
from torch import nn

from search.trainables import LAST_REPORT, checkpointing
from search.trainables.common import use_trial_cpus

DIGITS = 8  # x_0..x_7
PAD = 0  # output padding; digits are 1..9, so 0 is free
BOS = 10  # decoder start token (output vocabulary is 0..9)
ARCH_KEYS = ("emb_size", "hidden_size", "layers")  # cannot change once a checkpoint exists

DEFAULTS = {
    "encoder_lr": 1e-3,  # Adam lr of the encoder's parameter group
    "decoder_lr": 1e-3,  # Adam lr of the decoder's parameter group
    "teacher_forcing": 0.5,  # probability of feeding the true previous token instead of the prediction
    "emb_size": 128,
    "hidden_size": 256,
    "layers": 3,
    "dropout": 0.5,  # between GRU layers and on embeddings
    "clip": 1.0,  # gradient-norm clipping, or disable if == 0.0
    "batch_size": 32,
}
SETTINGS = {"epochs": 16, "examples_per_epoch": 4096, "val_examples": 1000, "seed": 0}
IGNORED_KEYS = {"settings", "model", "data"}  # sections the runner passes to every trainable


def target_of(src: torch.Tensor) -> torch.Tensor:
    """The code itself: rows ``idx, len, x_0..x_7`` (n, 10) -> ``x_idx..x_(idx+len-1)`` padded with 0 (n, 8)."""
    idx, length, digits = src[:, :1], src[:, 1:2], src[:, 2:]
    offsets = torch.arange(DIGITS)[None, :]  # (1, 8)
    gathered = digits.gather(1, (idx + offsets).clamp(max=DIGITS - 1))
    return torch.where(offsets < length, gathered, PAD)


def make_examples(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` examples: ``idx`` uniform in 0..7, then ``len`` uniform in 1..8-idx, digits uniform in 1..9.

    Returns:
        ``src`` (n, 10) long: ``idx, len, x_0..x_7``; ``tgt`` (n, 8) long: the subsequence padded with 0.
    """
    idx = torch.randint(0, DIGITS, (n,), generator=generator)
    length = (torch.rand(n, generator=generator) * (DIGITS - idx)).long() + 1
    digits = torch.randint(1, 10, (n, DIGITS), generator=generator)
    src = torch.cat([idx[:, None], length[:, None], digits], dim=1)
    return src, target_of(src)


class Seq2Seq(nn.Module):
    """GRU encoder and GRU decoder without attention; the encoder's final state starts the decoder."""

    def __init__(self, emb_size: int, hidden_size: int, layers: int, dropout: float):
        super().__init__()
        gru_dropout = dropout if layers > 1 else 0.0  # torch warns about dropout on a single layer
        self.encoder = nn.ModuleDict(
            {
                "embed": nn.Embedding(10, emb_size),
                "gru": nn.GRU(emb_size, hidden_size, layers, dropout=gru_dropout, batch_first=True),
            }
        )
        self.decoder = nn.ModuleDict(
            {
                "embed": nn.Embedding(11, emb_size),  # 0..9 and BOS
                "gru": nn.GRU(emb_size, hidden_size, layers, dropout=gru_dropout, batch_first=True),
                "out": nn.Linear(hidden_size, 10),
            }
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Logits (batch, 8, 10); each step feeds the true previous token with probability ``teacher_forcing``."""
        _, state = self.encoder["gru"](self.dropout(self.encoder["embed"](src)))  # state: (layers, batch, hidden)
        token = torch.full((src.shape[0],), BOS, dtype=torch.long)
        logits = []
        for step in range(tgt.shape[1]):
            output, state = self.decoder["gru"](self.dropout(self.decoder["embed"](token))[:, None, :], state)
            step_logits = self.decoder["out"](output[:, 0])  # (batch, 10)
            logits.append(step_logits)
            token = step_logits.argmax(-1)
            if teacher_forcing > 0:
                forced = torch.rand(src.shape[0], generator=generator) < teacher_forcing
                token = torch.where(forced, tgt[:, step], token)
        return torch.stack(logits, dim=1)


@dataclass
class State:
    """Everything a checkpoint holds: model, optimizer (two param groups), finished epochs, training RNG."""

    model: Seq2Seq
    optimizer: torch.optim.Adam
    generator: torch.Generator  # draws training examples and teacher-forcing coins
    epoch: int = 0


def full_config(config: dict) -> tuple[dict, dict]:
    """The config's hyperparameters and ``settings`` with the defaults filled in.

    Raises:
        ValueError: for a key this trainable does not know (a typo in the space would otherwise train the default).
    """
    unknown = sorted(set(config) - set(DEFAULTS) - IGNORED_KEYS)
    unknown += sorted(f"settings.{key}" for key in set(config.get("settings", {})) - set(SETTINGS) - {"cache_dir"})
    if unknown:
        raise ValueError(
            f"subsequence: unknown config keys {unknown}; hyperparameters are {sorted(DEFAULTS)}, "
            f"settings are {sorted(SETTINGS)}"
        )
    params = {key: config.get(key, value) for key, value in DEFAULTS.items()}
    settings = {**SETTINGS, **config.get("settings", {})}
    return params, settings


def build(config: dict) -> State:
    """A fresh model and optimizer for ``config``, seeded by ``settings.seed``."""
    params, settings = full_config(config)
    torch.manual_seed(settings["seed"])
    model = Seq2Seq(params["emb_size"], params["hidden_size"], params["layers"], params["dropout"])
    optimizer = torch.optim.Adam(
        [
            {"params": model.encoder.parameters(), "lr": params["encoder_lr"]},
            {"params": model.decoder.parameters(), "lr": params["decoder_lr"]},
        ]
    )
    return State(model, optimizer, torch.Generator().manual_seed(settings["seed"]))


def save(state: State, directory: str, config: dict) -> None:
    """Write ``state`` (and the architecture it was built with) to ``directory/state.pt``."""
    params, _ = full_config(config)
    torch.save(
        {
            "arch": {key: params[key] for key in ARCH_KEYS},
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "epoch": state.epoch,
            "generator": state.generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout
        },
        os.path.join(directory, "state.pt"),
    )


def restore(state: State, directory: str, config: dict) -> None:
    """Load a checkpoint into ``state``, then apply the current config's learning rates (PBT mutates them)."""
    saved = torch.load(os.path.join(directory, "state.pt"), weights_only=True)
    params, _ = full_config(config)
    arch = {key: params[key] for key in ARCH_KEYS}
    if saved["arch"] != arch:
        raise ValueError(
            f"checkpoint architecture {saved['arch']} differs from config {arch}: "
            "PBT may mutate only learning rates, teacher_forcing, clip and dropout; fix the others with {value: ...}"
        )
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.epoch = saved["epoch"]
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    # The model was built from the current config (dropout included); only the learning rates live in the
    # optimizer state and would otherwise come back from the checkpoint.
    encoder_group, decoder_group = state.optimizer.param_groups
    encoder_group["lr"], decoder_group["lr"] = params["encoder_lr"], params["decoder_lr"]


def train_epoch(state: State, config: dict) -> float:
    """One epoch of ``settings.examples_per_epoch`` fresh examples; returns the mean training loss."""
    params, settings = full_config(config)
    model, loss_fn = state.model, nn.CrossEntropyLoss()
    model.train()
    src, tgt = make_examples(settings["examples_per_epoch"], state.generator)
    total, batches = 0.0, 0
    for start in range(0, len(src), params["batch_size"]):
        batch_src, batch_tgt = src[start : start + params["batch_size"]], tgt[start : start + params["batch_size"]]
        logits = model(batch_src, batch_tgt, params["teacher_forcing"], state.generator)  # (batch, 8, 10)
        loss = loss_fn(logits.reshape(-1, 10), batch_tgt.reshape(-1))
        state.optimizer.zero_grad()
        loss.backward()
        if params["clip"] > 0:
            nn.utils.clip_grad_norm_(model.parameters(), params["clip"])
        state.optimizer.step()
        total, batches = total + loss.item(), batches + 1
    state.epoch += 1
    return total / batches


@torch.no_grad()
def evaluate(model: Seq2Seq, src: torch.Tensor, tgt: torch.Tensor) -> tuple[float, float]:
    """Greedy decoding (no teacher forcing): mean token cross-entropy and exact-sequence accuracy."""
    model.eval()
    logits = torch.cat([model(src[i : i + 500], tgt[i : i + 500]) for i in range(0, len(src), 500)])
    loss = nn.functional.cross_entropy(logits.reshape(-1, 10), tgt.reshape(-1)).item()
    accuracy = (logits.argmax(-1) == tgt).all(dim=1).float().mean().item()
    return loss, accuracy


def validation_set(config: dict) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation examples: the same for every trial with the same ``settings.seed``."""
    _, settings = full_config(config)
    return make_examples(settings["val_examples"], torch.Generator().manual_seed(settings["seed"] + 1_000_003))


def fit(config: dict, report: Callable[[dict, str], None], restore_from: str | None = None) -> None:
    """Train until ``settings.epochs``, calling ``report(metrics, checkpoint_dir)`` after every epoch.

    ``checkpoint_dir`` exists only during the call. Training resumes from ``restore_from`` when given.
    """
    _, settings = full_config(config)
    state = build(config)
    if restore_from is not None:
        restore(state, restore_from, config)
    val_src, val_tgt = validation_set(config)
    while state.epoch < settings["epochs"]:
        train_loss = train_epoch(state, config)
        val_loss, val_accuracy = evaluate(state.model, val_src, val_tgt)
        metrics = {"epoch": state.epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        metrics[LAST_REPORT] = state.epoch >= settings["epochs"]  # PBT does not exploit a spent trial
        with tempfile.TemporaryDirectory() as directory:
            save(state, directory, config)
            report(metrics, directory)


@checkpointing
def train(config: dict) -> None:
    """The Tune trainable: restores from ``tune.get_checkpoint()`` and reports every epoch with a checkpoint."""
    use_trial_cpus()
    checkpoint = tune.get_checkpoint()

    def report(metrics: dict, directory: str) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    if checkpoint is None:
        fit(config, report)
    else:
        with checkpoint.as_directory() as directory:
            fit(config, report, restore_from=directory)


def run_locally(config: dict, epochs: int | None = None) -> list[dict]:
    """Train without Tune (``tune.report`` only warns outside a session) and return the metrics of every epoch."""
    use_trial_cpus()
    settings = {**config.get("settings", {}), **({"epochs": epochs} if epochs is not None else {})}
    history: list[dict] = []
    fit({**config, "settings": settings}, lambda metrics, _: history.append(metrics))
    return history


def main(argv: list[str] | None = None) -> None:
    """Train one config without Tune and print every epoch: ``python experiments/subsequence.py [--smoke-test]``."""
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", default="{}", help='JSON hyperparameters, e.g. \'{"layers": 2, "dropout": 0}\'')
    parser.add_argument("--epochs", type=int, default=None, help=f"default {SETTINGS['epochs']}")
    parser.add_argument("--smoke-test", action="store_true", help="a tiny model for two small epochs")
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    if args.smoke_test:
        config = {"emb_size": 16, "hidden_size": 32, "layers": 1, **config}
        config["settings"] = {"epochs": 2, "examples_per_epoch": 256, "val_examples": 64, **config.get("settings", {})}
    use_trial_cpus()
    start = time.perf_counter()

    def report(metrics: dict, _directory: str) -> None:
        print(json.dumps({**metrics, "seconds": round(time.perf_counter() - start, 1)}), flush=True)

    settings = {**config.get("settings", {}), **({"epochs": args.epochs} if args.epochs is not None else {})}
    fit({**config, "settings": settings}, report)


if __name__ == "__main__":
    main()
