"""Registry of trainables, chosen by name in a spec's ``trainable:`` key.

A trainable is a plain function of one flat config dict that reports with ``ray.tune.report``. Entries are
import paths so that validating a spec never imports torch. A user's own function is named
``module.path:function`` or ``path/to/file.py:function`` (relative to the spec file).

A trainable's module may declare the metric a sweep without ``metric:`` ranks by, in the spec's own words::

    PRIMARY_METRIC = {"name": "bleu", "goal": "maximize"}
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.errors import SpecError


@dataclass(frozen=True)
class TrainableInfo:
    """What the runner needs to know about a trainable before it runs.

    Attributes:
        target: ``module:function`` import path of the function (imported only by the trials: torch, for ours).
        checkpoints: whether it saves and restores Tune checkpoints (required by PBT).
        setup: optional module of the trainable's driver side, importable without torch: its ``PRIMARY_METRIC`` and
            the hooks the runner calls when the module defines them:

            - ``check(config, searched_names, spec_file)`` before anything is written, with the trial config less
              the searched values; raises ``SpecError``;
            - ``prepare(settings, candidates) -> settings`` before the sweep (e.g. the decoding plan trials share);
            - ``start(settings) -> (settings, handle)`` on the driver once Ray is up: starts what the sweep's trials
              share (the decode trainable's pass board); the driver keeps ``handle`` until the sweep ends;
            - ``order_grid(combos) -> combos`` on a grid's combinations (nested dicts of searched values): the order
              its trials start in (decode interleaves configs of different beam passes, so that concurrent trials
              decode different passes).
    """

    target: str
    checkpoints: bool
    setup: str | None = None


HOOKS = ("check", "prepare", "start", "order_grid")
# The key a trainable sets true in its last report (its budget spent): PBT does not exploit a trial there.
LAST_REPORT = "last_report"

TRAINABLES: dict[str, TrainableInfo] = {
    "finetune": TrainableInfo(
        "search.trainables.finetune:finetune", checkpoints=True, setup="search.trainables.finetune_config"
    ),
    "decode": TrainableInfo(
        "search.trainables.decode:decode", checkpoints=False, setup="search.trainables.decode_config"
    ),
}


def checkpointing(fn):
    """Mark a user's trainable function as one that saves and restores Tune checkpoints (so PBT may run it).

    Under PBT its last report should carry ``LAST_REPORT: True`` (``"last_report": True``): PBT then never exploits
    the trial there, where no budget is left to train the donor's weights under the new config.

    Example:
        >>> from search.trainables import checkpointing
        >>> @checkpointing
        ... def train(config):
        ...     ...
    """
    fn.__search_checkpoints__ = True
    return fn


def _import_user_function(name: str, base_dir: Path, file: str) -> Callable:
    module_part, _, func = name.rpartition(":")
    if not module_part or not func:
        raise SpecError(
            file, "trainable", f"unknown trainable {name!r}; valid: {', '.join(TRAINABLES)}, or module:function"
        )
    if module_part.endswith(".py"):
        path = (base_dir / module_part).resolve()
        if not path.is_file():
            raise SpecError(file, "trainable", f"file not found: {path}; the path is relative to {file}")
        mod_name = path.stem
        module = sys.modules.get(mod_name)
        if module is None or Path(getattr(module, "__file__", "") or "").resolve() != path:
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            try:
                module_spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[mod_name]
                raise SpecError(file, "trainable", f"importing {path} failed: {type(e).__name__}: {e}") from None
        # Ray workers cannot import a file by path: ship the module's code with the function (Ray pickles with
        # its own vendored cloudpickle).
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(module)
    else:
        if str(base_dir) not in sys.path:
            sys.path.append(str(base_dir))
        try:
            module = importlib.import_module(module_part)
        except ImportError as e:
            raise SpecError(file, "trainable", f"cannot import module {module_part!r}: {e}") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise SpecError(file, "trainable", f"{module_part} has no function {func!r}")
    return fn


def trainable_info(name: str, base_dir: Path, file: str) -> TrainableInfo:
    """The registry entry for ``name``, or an entry for a user's ``module:function`` (imported to check it exists)."""
    if name in TRAINABLES:
        return TRAINABLES[name]
    fn = _import_user_function(name, Path(base_dir), file)
    return TrainableInfo(target=name, checkpoints=bool(getattr(fn, "__search_checkpoints__", False)))


class _Deferred:
    """A registered trainable by its import path: picklable without importing it, imported on the first call (so the
    driver never imports torch; each trial's worker does, once)."""

    def __init__(self, target: str):
        self.target = target
        self.__name__ = target.rpartition(":")[2]

    def __call__(self, config: dict) -> Any:
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)(config)


def load_function(name: str, base_dir: Path, file: str) -> Callable:
    """The trainable function: a registered one imported where it is first called (not here), a user's own
    ``module:function`` imported now (to check it exists)."""
    if name in TRAINABLES:
        return _Deferred(TRAINABLES[name].target)
    return _import_user_function(name, Path(base_dir), file)


def _setup_module(name: str) -> Any:
    setup = TRAINABLES[name].setup if name in TRAINABLES else None
    return None if setup is None else importlib.import_module(setup)


def primary_metric(name: str, base_dir: Path, file: str) -> Any:
    """The ``PRIMARY_METRIC`` the trainable declares (a ``{name, goal}`` mapping, checked by the caller), or None: a
    registered one in its ``setup`` module, a user's in the function's module (imported)."""
    if name in TRAINABLES:
        module = _setup_module(name)
    else:
        module = inspect.getmodule(_import_user_function(name, Path(base_dir), file))
    return getattr(module, "PRIMARY_METRIC", None)


def load_hook(name: str, hook: str) -> Callable | None:
    """A registered trainable's ``check``, ``prepare``, ``start`` or ``order_grid`` function (``HOOKS``), or None."""
    if hook not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}; valid: {', '.join(HOOKS)}")
    return getattr(_setup_module(name), hook, None)


__all__ = [
    "HOOKS", "TRAINABLES", "TrainableInfo", "checkpointing", "load_function", "load_hook", "primary_metric",
    "trainable_info",
]  # fmt: skip
