"""Registry of trainables, chosen by name in a spec's ``trainable:`` key.

A trainable is a plain function of one flat config dict that reports with ``ray.tune.report``. Entries are
import paths so that validating a spec never imports torch. A user's own function is named
``module.path:function`` or ``path/to/file.py:function`` (relative to the spec file).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainableInfo:
    """What the runner needs to know about a trainable before it runs.

    Attributes:
        target: ``module:function`` import path of the function.
        checkpoints: whether it saves and restores Tune checkpoints (required by PBT).
        prepare: optional ``module:function`` called by the runner as ``prepare(config_template, param_space)``
            before the sweep, returning extra ``settings`` entries (e.g. the decoding plan shared by trials).
    """

    target: str
    checkpoints: bool
    prepare: str | None = None


TRAINABLES: dict[str, TrainableInfo] = {
    "finetune": TrainableInfo("search.trainables.finetune:finetune", checkpoints=True),
    "decode": TrainableInfo(
        "search.trainables.decode:decode", checkpoints=False, prepare="search.trainables.decode:prepare"
    ),
}


def checkpointing(fn):
    """Mark a user's trainable function as one that saves and restores Tune checkpoints (so PBT may run it).

    Example:
        >>> from search.trainables import checkpointing
        >>> @checkpointing
        ... def train(config):
        ...     ...
    """
    fn.__search_checkpoints__ = True
    return fn


__all__ = ["TRAINABLES", "TrainableInfo", "checkpointing"]
