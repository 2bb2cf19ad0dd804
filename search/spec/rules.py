"""Rules every mapping of a spec shares: its keys are known (a near miss names the key meant), and a whole number
written as a float counts as an integer, as in W&B's JSON schema.

Example:
    >>> did_you_mean("paramters", ("method", "metric", "parameters"))
    " did you mean 'parameters'?"
    >>> check_keys({"metrc": {}}, ("method", "metric"), "sweep.yaml", "")
    Traceback (most recent call last):
    ...
    search.errors.SpecError: sweep.yaml: metrc: unknown key; did you mean 'metric'? valid keys: method, metric
    >>> whole(1e3), whole(2.5), whole(True)
    (1000, 2.5, True)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from search.errors import SpecError


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``" did you mean 'X'?"`` for the closest of ``choices`` (difflib's ratio >= 0.6), else ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" did you mean {close[0]!r}?" if close else ""


def check_keys(m: Mapping, allowed: tuple[str, ...], file: str, prefix: str) -> None:
    """Refuse the first key of ``m`` not in ``allowed``, naming its path (``prefix`` + key) and the key meant."""
    for k in m:
        if k not in allowed:
            raise SpecError(
                file, f"{prefix}{k}", f"unknown key;{did_you_mean(k, allowed)} valid keys: {', '.join(allowed)}"
            )


def whole(value: Any) -> Any:
    """``value`` as an int when it is a float without a fraction (``1e3`` reads as 1000.0), else unchanged.

    W&B's JSON schema counts 1000.0 as an integer (``run_cap``, ``min_iter``, ``int_uniform``'s bounds), and
    ``1e3`` in a sweep file is a float.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


__all__ = ["check_keys", "did_you_mean", "whole"]
