"""The shape of a trial's config: the searched parameters at the top level, beside the sections a sweep passes
to every trial unsearched. The spec refuses parameters with these names; trainables take them apart.

Example:
    >>> searched({"lr": 0.1, "model": "m", "settings": {}})
    {'lr': 0.1}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# model: the model to train or decode; data: its data; settings: the trainable's own options.
SECTIONS = ("model", "data", "settings")


def searched(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without its sections: the parameters the search chose."""
    return {k: v for k, v in config.items() if k not in SECTIONS}


__all__ = ["SECTIONS", "searched"]
