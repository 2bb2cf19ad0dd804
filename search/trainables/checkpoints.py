"""Layout of a fine-tune checkpoint, and its export as a plain Hugging Face model directory.

A checkpoint directory written by the ``finetune`` trainable holds::

    model/              save_pretrained() of the model, its tokenizer and generation_config.json
    training_state.pt   step, epoch position, optimizer and fp16 loss-scaler state, LR-schedule state, RNG states,
                        the trial that saved it, and (for the record) its device and precision
    hparams.json        the hyperparameters in effect when it was saved (for people; restore ignores it)

``model/`` is already a model directory; ``export_model_dir`` loads it and writes it out again so that the result is
known to load with ``from_pretrained`` and to translate with ``generate()``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search.files import atomic_write

MODEL_SUBDIR = "model"
STATE_FILE = "training_state.pt"
HPARAMS_FILE = "hparams.json"


def save_checkpoint(directory: str | Path, model, tokenizer, state: dict[str, Any], hparams: dict[str, Any]) -> Path:
    """Write model, tokenizer, training state and hyperparameters into ``directory``.

    Args:
        directory: an empty or new directory.
        model: a transformers seq2seq model.
        tokenizer: its tokenizer.
        state: anything ``torch.save`` can store (optimizer state dict, step, RNG states...).
        hparams: JSON-serialisable hyperparameters.

    Returns:
        ``directory`` as a Path.
    """
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory / MODEL_SUBDIR)
    tokenizer.save_pretrained(directory / MODEL_SUBDIR)
    torch.save(state, directory / STATE_FILE)
    atomic_write(directory / HPARAMS_FILE, json.dumps(hparams, indent=2, sort_keys=True, default=str) + "\n")
    return directory


def load_training_state(directory: str | Path) -> dict[str, Any]:
    """The ``state`` dict that ``save_checkpoint`` wrote (RNG states included, hence ``weights_only=False``).

    Its tensors load onto the CPU whatever device wrote them (a GPU trial's checkpoint loads on a CPU-only machine):
    RNG states must be CPU tensors, and ``optimizer.load_state_dict`` then moves the moments onto the device of the
    parameters they belong to.
    """
    import torch

    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)


def model_dir(directory: str | Path) -> Path:
    """The model directory inside a checkpoint directory."""
    return Path(directory) / MODEL_SUBDIR


def _as_directory(checkpoint) -> Path:
    if isinstance(checkpoint, str | Path):
        return Path(checkpoint)
    # A ray.tune.Checkpoint on local storage (the runner's default) has a plain directory path.
    path = Path(checkpoint.path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint.path} is not a local directory; download it first")
    return path


def export_model_dir(checkpoint, out_dir: str | Path, generation: dict[str, Any] | None = None) -> Path:
    """Turn a fine-tune checkpoint into a plain model directory that loads with ``from_pretrained``.

    Args:
        checkpoint: a checkpoint directory, or a ``ray.tune.Checkpoint`` on local storage.
        out_dir: where to write the model, its tokenizer and ``generation_config.json``.
        generation: optional ``generate()`` defaults written into ``generation_config.json`` (e.g. a decoding
            search's winners), so that every later ``model.generate()`` uses them.

    Returns:
        ``out_dir`` as a Path.

    Example:
        >>> export_model_dir(result.best_checkpoints[0][0], "exports/bible-small")  # doctest: +SKIP
        >>> AutoModelForSeq2SeqLM.from_pretrained("exports/bible-small").generate(...)  # doctest: +SKIP
    """
    from search.models import load_pretrained

    source = model_dir(_as_directory(checkpoint))
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} has no config.json: not a fine-tune checkpoint")
    model, tokenizer = load_pretrained(source)
    if generation:
        for key, value in generation.items():
            setattr(model.generation_config, key, value)
        model.generation_config.validate(strict=True)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


__all__ = ["export_model_dir", "load_training_state", "model_dir", "save_checkpoint"]
