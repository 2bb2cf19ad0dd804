"""Ray's W&B callback with the API key kept out of everything Ray writes down.

Ray's ``WandbLoggerCallback`` hands ``WANDB_API_KEY`` to its logging actors as a runtime-env variable, and Ray's
runtime-env agent logs runtime envs in full (``runtime_env_agent.log`` in the session directory, kept after the run).
Here offline runs get no key at all (they never authenticate; ``wandb sync`` uses the user's login later), and online
runs get it through Ray's in-memory object store, read by the logging actor itself.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray.air.integrations.wandb import WANDB_ENV_VAR, WandbLoggerCallback, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node

OFFLINE_KEY = "0" * 40  # Ray's callback insists on a key before it starts; an offline run never uses it


class _LoggingActor(_WandbLoggingActor):
    """Ray's logging actor, taking the key from the object store instead of its environment."""

    def __init__(self, *args: Any, api_key: list | None = None, **kwargs: Any):
        if api_key:  # [ObjectRef]: inside a list, Ray hands the reference over, not the value
            os.environ[WANDB_ENV_VAR] = ray.get(api_key[0])
        super().__init__(*args, **kwargs)


class WandbCallback(WandbLoggerCallback):
    """``WandbLoggerCallback`` whose logging actors have no runtime env, hence no key in Ray's logs."""

    def setup(self, *args: Any, **kwargs: Any) -> None:
        offline, before = self.kwargs.get("mode") == "offline", os.environ.get(WANDB_ENV_VAR)
        if offline:
            self.api_key = OFFLINE_KEY
        super().setup(*args, **kwargs)  # sets os.environ[WANDB_API_KEY] from api_key
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
        super()._start_logging_actor(trial, exclude_results, api_key=self._key_ref, **wandb_init_kwargs)

    def __getstate__(self) -> dict:  # the tuner is pickled into the run directory: no key, no actor handles
        return {**self.__dict__, "_key_ref": None, "_remote_logger_class": None, "api_key": None}
