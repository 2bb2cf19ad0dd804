"""Ray Tune hyperparameter and decoding-parameter search for seq2seq models.

The public verbs: ``load_spec`` (YAML -> validated Spec), ``run`` (Spec -> Ray Tune sweep), ``resume`` (continue an
interrupted sweep), ``rank`` and ``format_ranking`` (run directory -> ranked table), ``export`` (winner -> model defaults).

Example:
    >>> from search import load_spec, run, rank, format_ranking
    >>> spec = load_spec("experiments/subsequence_asha.yaml", smoke_test=True)  # doctest: +SKIP
    >>> _, run_dir = run(spec)  # doctest: +SKIP
    >>> print(format_ranking(rank(run_dir), "md"))  # doctest: +SKIP
"""

from __future__ import annotations

from search.errors import DataError, SpecError, UserError
from search.spec import Spec, load_spec


def run(*args, **kwargs):
    """See :func:`search.runner.run` (imported lazily: Ray is slow to import)."""
    from search.runner import run as _run

    return _run(*args, **kwargs)


def resume(*args, **kwargs):
    """See :func:`search.runner.resume`."""
    from search.runner import resume as _resume

    return _resume(*args, **kwargs)


def rank(*args, **kwargs):
    """See :func:`search.results.rank`."""
    from search.results import rank as _rank

    return _rank(*args, **kwargs)


def format_ranking(*args, **kwargs):
    """See :func:`search.results.format_ranking`."""
    from search.results import format_ranking as _format

    return _format(*args, **kwargs)


def export(*args, **kwargs):
    """See :func:`search.export.export`."""
    from search.export import export as _export

    return _export(*args, **kwargs)


__all__ = [
    "DataError",
    "Spec",
    "SpecError",
    "UserError",
    "export",
    "format_ranking",
    "load_spec",
    "rank",
    "resume",
    "run",
]
