"""The YAML side: a sweep file and its layers -> a validated, frozen :class:`Spec`.

``layers`` reads the file and merges its layers (``space:`` file, ``smoke_test:``, ``--set``, ``--search``); ``params``
holds W&B's distributions as classes, nested and conditional parameters; ``validate`` checks every key and builds the
``Spec`` of ``model``. Nothing here imports Ray, torch or the user's code, so a saved spec reads back anywhere.
"""

from search.spec.layers import deep_merge, load_raw, parse_search_grid, read_yaml
from search.spec.model import DEFAULT_SAMPLES, SECTIONS, Metric, Resources, Scheduler, Spec
from search.spec.params import DISTRIBUTIONS, Param, parse_parameters, trial_config
from search.spec.validate import load_spec, validate

__all__ = [
    "DEFAULT_SAMPLES", "DISTRIBUTIONS", "SECTIONS", "Metric", "Param", "Resources", "Scheduler", "Spec", "deep_merge",
    "load_raw", "load_spec", "parse_parameters", "parse_search_grid", "read_yaml", "trial_config", "validate",
]  # fmt: skip
