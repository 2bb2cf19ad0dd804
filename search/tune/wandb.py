"""W&B runs a user can read: one per trial, grouped by sweep, and one summary run with the ranked table and plots.

Ray's ``WandbLoggerCallback`` logs each trial from a logging actor. This subclass changes what it logs:

- a trial's run is named after the trial and its searched values (``a1b2c_00001 lr=0.001 num_beams=5``), has
  ``job_type`` ``trial`` and, as its config, the sweep's parameters by name at the top level and the user's own
  ``trainable``/``model``/``data``/``settings`` under one key, :data:`SECTIONS_KEY` (never the internal settings the
  runner and the trainables' hooks add: ``cache_dir``, ``spec_file``, ``decode_plan``, ...);
- runs are grouped by ``wandb.group``, else ``WANDB_RUN_GROUP``, else the run directory's name;
- when the sweep ends, the driver writes one run of ``job_type`` ``summary`` in the same group: the ranked table of
  ``search rank`` as a ``wandb.Table`` (key ``ranking``) and every plot of ``search plot`` as a ``wandb.Image``
  (keys ``plots/<name>``).

It also keeps the API key out of everything Ray writes down. Ray's callback hands ``WANDB_API_KEY`` to its logging
actors as a runtime-env variable, and Ray's runtime-env agent logs runtime envs in full (``runtime_env_agent.log`` in
the session directory, kept after the run). Here offline runs get no key at all (they never authenticate; ``wandb
sync`` uses the user's login later), and online runs get it through Ray's in-memory object store, read by the logging
actor itself.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import ray
from ray.air.integrations.wandb import WANDB_ENV_VAR, WandbLoggerCallback, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node

from search.errors import UserError
from search.report import Ranking, format_ranking, plot, rank, trial_params
from search.spec import Spec
from search.storage import Remote

logger = logging.getLogger(__name__)

OFFLINE_KEY = "0" * 40  # Ray's callback insists on a key before it starts; an offline run never uses it
SECTIONS_KEY = "sweep"  # the config key of the user's trainable, model, data and settings: parameters stay on top
NAME_LIMIT = 64  # characters of a run's name: about what W&B's runs table shows before it cuts


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_name(trial_id: str, params: dict[str, Any]) -> str:
    """``a1b2c_00001 lr=0.001 num_beams=5``: the trial and its searched values, cut to :data:`NAME_LIMIT`."""
    text = " ".join([trial_id, *(f"{name}={_short(v)}" for name, v in params.items())])
    return text if len(text) <= NAME_LIMIT else text[: NAME_LIMIT - 1] + "…"


def sections(spec: Spec) -> dict[str, Any]:
    """The sections the user wrote (not those the runner completes with internal keys), as plain data."""
    found = {"trainable": spec.trainable, "model": spec.model, "data": spec.data, "settings": spec.settings}
    return json.loads(json.dumps({k: v for k, v in found.items() if v}, default=str))


def run_config(config: dict, spec: Spec) -> dict[str, Any]:
    """A trial's W&B config: every parameter by its dotted name (switched-off conditional ones absent), and
    :func:`sections` under :data:`SECTIONS_KEY`."""
    return {**trial_params(config, spec, constants=True), SECTIONS_KEY: sections(spec)}


def ranking_table(ranking: Ranking) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the ranked table as ``search rank --format json`` gives it, one flat row per trial:
    the metric, the bootstrap's ``p_value`` and ``tied`` (when tested), the parameters, the extra columns, then
    ``trial_id``, ``status``, ``training_iteration`` and ``error``; in the ranking's order."""
    data = json.loads(format_ranking(ranking, "json"))
    test = ["p_value", "tied"] if data["bootstrap"] else []
    tail = ["trial_id", "status", "training_iteration", "error"]
    columns = [ranking.metric, *test, *ranking.params, *ranking.columns, *tail]
    rows = [
        [row["value"], *(row[k] for k in test), *(row["params"].get(p) for p in ranking.params),
         *(row["columns"].get(c) for c in ranking.columns), *(row[k] for k in tail)]
        for row in data["rows"]
    ]  # fmt: skip
    return columns, rows


class _LoggingActor(_WandbLoggingActor):
    """Ray's logging actor, taking the key from the object store instead of its environment."""

    def __init__(self, *args: Any, api_key: list | None = None, **kwargs: Any):
        if api_key:  # [ObjectRef]: inside a list, Ray hands the reference over, not the value
            os.environ[WANDB_ENV_VAR] = ray.get(api_key[0])
        super().__init__(*args, **kwargs)


class WandbCallback(WandbLoggerCallback):
    """``WandbLoggerCallback`` with readable runs, a summary run at the end, and no key in Ray's logs.

    Args:
        spec: the sweep (names the parameters of each trial's config).
        run_dir: the run directory (or remote location) the summary ranks and plots; its name is the default group.
        **kwargs: ``WandbLoggerCallback``'s (``project``, ``group``, and ``wandb.init``'s ``mode``, ``dir``, ...).
    """

    def __init__(self, spec: Spec, run_dir: Path | Remote, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec
        self.run_dir = run_dir

    def setup(self, *args: Any, **kwargs: Any) -> None:
        offline, before = self.kwargs.get("mode") == "offline", os.environ.get(WANDB_ENV_VAR)
        if offline:
            self.api_key = OFFLINE_KEY
        super().setup(*args, **kwargs)  # sets os.environ[WANDB_API_KEY] from api_key; group from WANDB_RUN_GROUP
        self.group = self.group or self.run_dir.name
        if offline and before is None:  # leave the driver's environment as it was
            os.environ.pop(WANDB_ENV_VAR, None)
        elif offline:
            os.environ[WANDB_ENV_VAR] = before
        key = None if offline else os.environ.get(WANDB_ENV_VAR)
        self._key_ref = [ray.put(key)] if key else None
        self._remote_logger_class = ray.remote(
            num_cpus=0, **_force_on_current_node(), max_restarts=-1, max_task_retries=-1
        )(_LoggingActor)

    def _start_logging_actor(self, trial: Any, exclude_results: list, **wandb_init_kwargs: Any) -> None:
        params = trial_params(trial.config, self.spec)
        wandb_init_kwargs.update(
            name=run_name(trial.trial_id, params), job_type="trial", config=run_config(trial.config, self.spec)
        )
        super()._start_logging_actor(trial, exclude_results, api_key=self._key_ref, **wandb_init_kwargs)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        # The logging actor sets a result's "config" as the run's config: the trial's (under PBT, its current one).
        config = run_config(result.get("config") or trial.config, self.spec)
        super().log_trial_result(iteration, trial, {**result, "config": config})

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        super().on_experiment_end(trials, **info)  # the trials' runs finish first
        try:
            self._log_summary()
        except Exception as error:  # the sweep's results are safe in the run directory; W&B is a view of them
            logger.warning("W&B: no summary run for %s: %s", self.run_dir, " ".join(str(error).split()))

    def _log_summary(self) -> None:
        import wandb

        ranking = rank(self.run_dir)
        try:
            images = plot(self.run_dir)
        except UserError:  # nothing fits a plot (no beam grid, no trial reported twice)
            images = []
        columns, rows = ranking_table(ranking)
        config = {"metric": ranking.metric, "mode": ranking.mode, "scope": ranking.scope, "method": self.spec.method}
        run = wandb.init(
            project=self.project, group=self.group, job_type="summary", name=f"{self.group} summary",
            config={**config, SECTIONS_KEY: sections(self.spec)}, reinit="create_new",
            settings=wandb.Settings(silent=True), **self.kwargs,
        )  # fmt: skip
        try:
            table = wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
            run.log({"ranking": table, **{f"plots/{p.stem}": wandb.Image(str(p)) for p in images}})
            if ranking.best is not None:
                run.summary.update({ranking.metric: ranking.best.value, "best_trial": ranking.best.trial_id})
        finally:
            run.finish()

    def __getstate__(self) -> dict:  # the tuner is pickled into the run directory: no key, no actor handles
        return {**self.__dict__, "_key_ref": None, "_remote_logger_class": None, "api_key": None}
