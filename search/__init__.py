"""Ray Tune hyperparameter and decoding-parameter search for seq2seq models.

The flow, one subpackage per step, each importing only the steps below it (``import-linter`` checks it):

- ``spec``: a sweep YAML file (W&B's sweep format with our keys beside it) and its layers -> a validated, frozen
  ``Spec``. W&B's distributions are classes. Never imports Ray, torch or the user's code.
- ``decoding``: many ``generate()`` configs at the cost of few: one beam pass per ``num_beams`` replayed exactly for
  every (length_penalty, early_stopping), and a cache that shares passes between trials.
- ``trainables``: ``finetune`` and ``decode``, the registry that also takes a user's ``module:function``, and what
  every trainable shares (threads, the files it leaves, checkpoints). A trainable knows nothing of YAML.
- ``rundir``: the one reader and writer of run directories; reading needs neither Ray nor the user's code.
- ``tune``: the Ray side: Tune and hyperopt spaces, the registries of search algorithms and schedulers, the runner.
- ``report``: a run -> a ranked table with sacreBLEU's paired bootstrap, its formats and plots.
- ``export``: the winner -> a model's defaults (``generation_config.json``, a model directory, a model card).
- ``pipeline``: fine-tune sweep -> top-k checkpoints -> a decoding sweep on each -> export.

Below them all: ``errors`` (one-line user errors), ``checks`` (value checks), ``files`` (atomic writes), ``sections``
(the shape of a trial config), ``metrics`` (sacreBLEU), ``models`` and ``corpora``.

The public verbs, imported lazily (Ray and torch are slow to import): ``load_spec``, ``run``, ``resume``, ``rank``,
``format_ranking``, ``plot``, ``export``, ``load_pipeline``, ``run_pipeline``.

Example:
    >>> import search
    >>> search.rank.__module__
    'search.report.ranking'
    >>> from search import load_spec, run, rank, format_ranking
    >>> spec = load_spec("experiments/subsequence_asha.yaml", smoke_test=True)  # doctest: +SKIP
    >>> _, run_dir = run(spec)  # doctest: +SKIP
    >>> print(format_ranking(rank(run_dir), "md"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.errors import DataError, SpecError, UserError
from search.lazy import lazy_names

# public name -> the module that defines it
_LAZY = {
    "Spec": "search.spec",
    "load_spec": "search.spec",
    "run": "search.tune",
    "resume": "search.tune",
    "rank": "search.report",
    "format_ranking": "search.report",
    "plot": "search.report",
    "export": "search.export",
    "load_pipeline": "search.pipeline",
    "run_pipeline": "search.pipeline",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time PEP 562's __getattr__ imports on first use
    from search.export import export
    from search.pipeline import load_pipeline, run_pipeline
    from search.report import format_ranking, plot, rank
    from search.spec import Spec, load_spec
    from search.tune import resume, run


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = [
    "DataError", "Spec", "SpecError", "UserError", "export", "format_ranking", "load_pipeline", "load_spec", "plot",
    "rank", "resume", "run", "run_pipeline",
]  # fmt: skip
