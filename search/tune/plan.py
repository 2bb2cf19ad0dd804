"""A validated spec -> what the Tuner needs (``Plan``), with every check that needs more than the YAML: the trainable,
its model and data sections, the storage. Nothing is written and Ray is not started here.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.checks import require_storage
from search.errors import SpecError
from search.spec import Param, Spec, trial_config
from search.spec.params import put_nested
from search.storage import Remote, is_uri, local_path
from search.trainables.common import use_trial_cpus
from search.tune.registry import check_spec, complete_metric

DATA_NON_PATH_KEYS = (
    "corpus", "format", "source_field", "target_field", "split", "name", "delimiter", "limit",
    "hub", "config", "revision", "pair", "sacrebleu", "langpair",  # dataset names and options (search.corpora)
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Everything the Tuner needs, built from a spec without side effects."""

    spec: Spec
    storage: Path | Remote  # a local (or shared) directory, or remote storage every node writes to
    name: str  # the run directory is the first free of storage/name, name-2, ... (claimed when the run starts)
    param_space: dict
    trial_fn: Callable
    # Checks that take seconds (loading the model's config and tokenizer imports transformers), left to the runner
    # by plan(defer=True): it runs them while Ray starts, and still before anything is written.
    pending: tuple[Callable[[], None], ...] = ()


def _resolve_path(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_data_paths(data: Any, base: Path, key: str = "") -> Any:
    """Make every path in a ``data`` section absolute (trials run in their own working directories)."""
    if key in DATA_NON_PATH_KEYS:  # a name, or a mapping of names such as split: {dev: validation}
        return data
    if isinstance(data, dict):
        return {k: _resolve_data_paths(v, base, k) for k, v in data.items()}
    if isinstance(data, str) and key not in DATA_NON_PATH_KEYS:
        return _resolve_path(data, base)
    return data


def resolved_sections(spec: Spec, cache_dir: Path) -> dict:
    """``model``, ``data`` and ``settings`` as the trainable receives them: absolute paths, ``cache_dir`` (and for a
    built-in trainable ``spec_file``) added."""
    from search.models import locate_model
    from search.trainables import TRAINABLES

    out: dict[str, Any] = {"settings": {**spec.settings, "cache_dir": str(cache_dir)}}
    if spec.trainable in TRAINABLES:  # the built-in trainables name the sweep file in the errors a trial raises
        out["settings"]["spec_file"] = spec.file
        # ... and compute the sweep's metric and columns beside settings.metrics (those search.metrics knows)
        out["settings"]["sweep_metrics"] = [complete_metric(spec).metric.name, *spec.columns]
    if isinstance(spec.model, str):
        out["model"] = spec.model if is_uri(spec.model) else locate_model(spec.model, spec.base_dir)  # or a Hub id
    elif spec.model is not None:
        out["model"] = dict(spec.model)
    if spec.data:
        out["data"] = _resolve_data_paths(dict(spec.data), spec.base_dir)
    return out


def preflight(spec: Spec, sections: dict, defer: list | None = None) -> None:
    """Checks that need more than the YAML: a trainable to run, a usable model and data for the built-in trainables.
    The slow ones go to ``defer`` when it is given, to be run by the caller before anything is written."""
    from search.trainables import TRAINABLES, load_hook

    if not spec.trainable:
        raise SpecError(spec.file, "trainable", "missing; running needs one, e.g. --set trainable=finetune")
    if spec.wandb.get("mode") == "online" and not os.environ.get("WANDB_API_KEY") and not _wandb_logged_in():
        raise SpecError(spec.file, "wandb.mode", "online needs a W&B login; run `wandb login`, or use mode: offline")
    if spec.trainable not in TRAINABLES:
        return  # a user's function owns its sections
    if "model" in sections:
        from search.models import check_loadable, validate_model

        validate_model(sections["model"], spec.file)
        if isinstance(sections["model"], str) and not is_uri(sections["model"]):  # a remote one: config.json found
            load = functools.partial(check_loadable, sections["model"], spec.file)
            if defer is None:
                load()
            else:
                defer.append(load)
    if "data" in sections:
        from search.corpora import validate_data

        validate_data(sections["data"], spec.file)
    check = load_hook(spec.trainable, "check")
    if check is not None:
        constants: dict = {}
        for p in spec.parameters:
            if p.is_constant:
                put_nested(constants, p.path, p.dist.value)
        searched = [p.name for p in spec.searched]
        check({**constants, **sections, "settings": dict(spec.settings)}, searched, spec.file)


def _wandb_logged_in() -> bool:
    try:
        import wandb

        return bool(wandb.Api(timeout=5).api_key)
    except Exception:
        return False


def _make_trial_fn(fn: Callable, params: tuple[Param, ...]) -> Callable:
    """Wrap a trainable: merge a conditional grid's combination, drop switched-off parameters, set threads."""

    def trial(config: dict) -> Any:
        use_trial_cpus()
        return fn(trial_config(config, params))

    trial.__name__ = getattr(fn, "__name__", "trial")
    trial.__qualname__ = trial.__name__
    return trial


def plan(spec: Spec, *, storage: str | None = None, name: str | None = None, defer: bool = False) -> Plan:
    """Build the Tuner's inputs; raises SpecError/DataError before anything is written. With ``defer``, the slow
    checks are left in ``Plan.pending`` for the caller to run (``search.tune.runner`` runs them while Ray starts)."""
    from search.trainables import load_function, load_hook
    from search.tune.space import candidates, param_space

    check_spec(spec)
    location = require_storage(storage or spec.storage, spec.file, "--storage" if storage else "storage")
    if is_uri(location):
        where: Path | Remote = Remote.parse(location, dict(spec.storage_options))
        problem = where.problem()
        if problem is not None:
            raise SpecError(spec.file, "--storage" if storage else "storage", f"{location}: {problem}")
        # Tokenizers and decoded passes are cached per node: remote storage is no place for a cache.
        cache_dir = Path(tempfile.gettempdir()) / "search-cache"
    else:
        where = local_path(location)
        cache_dir = where / ".cache"
    sections = resolved_sections(spec, cache_dir)
    pending: list[Callable[[], None]] = []
    preflight(spec, sections, pending if defer else None)
    prepare = load_hook(spec.trainable, "prepare")
    if prepare is not None:
        sections["settings"] = prepare(dict(sections["settings"]), candidates(spec.parameters))
    fn = load_function(spec.trainable, spec.base_dir, spec.file)
    # A grid's trials start in the order the trainable's order_grid hook gives (decode: different passes at once).
    space = {**param_space(spec.parameters, spec.method, load_hook(spec.trainable, "order_grid")), **sections}
    return Plan(spec, where, name or spec.name, space, _make_trial_fn(fn, spec.parameters), tuple(pending))


__all__ = ["DATA_NON_PATH_KEYS", "Plan", "plan", "preflight", "resolved_sections"]
