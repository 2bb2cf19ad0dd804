"""Checks of single values read from YAML or a trial config, each raising the one-line :class:`SpecError`.

YAML gives ``True`` for ``yes``/``true``, and ``bool`` is an ``int`` to Python: a flag must never pass as a number.

Example:
    >>> require_int(3, "sweep.yaml", "run_cap", minimum=1)
    3
    >>> require_int(True, "sweep.yaml", "run_cap")
    Traceback (most recent call last):
    ...
    search.errors.SpecError: sweep.yaml: run_cap: must be an integer, got True
"""

from __future__ import annotations

import math
from typing import Any

from search.errors import SpecError
from search.storage import is_uri

# The storage URI schemes pyarrow opens (Ray Tune takes the same).
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def require_int(value: Any, file: str, key: str, minimum: int | None = None) -> int:
    """``value`` when it is an integer (``>= minimum``); else a SpecError naming ``file`` and ``key``."""
    if not is_int(value):
        raise SpecError(file, key, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(file, key, f"must be >= {minimum}, got {value!r}")
    return value


def require_number(value: Any, file: str, key: str, minimum: float | None = None) -> float:
    """``value`` as a float when it is a finite number (``>= minimum``); else a SpecError."""
    if not is_number(value):
        raise SpecError(file, key, f"must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(file, key, f"must be >= {minimum}, got {value!r}")
    return float(value)


def require_positive_int(value: Any, file: str, key: str) -> int:
    """``value`` when it is an integer > 0, with the message every ``settings`` size gives."""
    if not is_int(value) or value < 1:
        raise SpecError(file, key, f"must be a positive integer, got {value!r}")
    return value


def require_storage(value: Any, file: str, key: str) -> str:
    """A directory path, or a storage URI (``s3://bucket/prefix``, ``gs://...``) whose scheme pyarrow knows."""
    if not isinstance(value, str) or not value:
        raise SpecError(file, key, f"must be a directory path or a URI such as s3://bucket/prefix, got {value!r}")
    if is_uri(value):
        scheme, rest = value.split("://", 1)
        if scheme.lower() not in STORAGE_SCHEMES:
            raise SpecError(
                file, key, f"unknown storage scheme {scheme!r} in {value!r}; use one of {', '.join(STORAGE_SCHEMES)}"
                ", or a directory path"
            )  # fmt: skip
        if not rest.split("?", 1)[0].strip("/"):
            raise SpecError(file, key, f"names no bucket, got {value!r}; write e.g. {scheme}://bucket/runs")
    elif value.split("/", 1)[0].endswith(":"):  # "s3:/bucket": a URI missing a slash would become a local dir "s3:"
        raise SpecError(file, key, f"looks like a URI missing '//', got {value!r}; write e.g. s3://bucket/runs")
    return value


__all__ = ["is_int", "is_number", "require_int", "require_number", "require_positive_int", "require_storage"]
