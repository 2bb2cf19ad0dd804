"""The winner of a PBT sweep is a schedule of configs, not one config: which configs its weights were trained with,
from Ray's ``pbt_global.txt`` (every exploit, in order), following the trial's lineage back through its donors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search.export.values import nested, yaml_safe
from search.report import Row, trial_params
from search.rundir import read_history
from search.spec import Spec


def _step_at(history: list[dict], iteration: int) -> Any:
    rows = [r for r in history if r.get("training_iteration") == iteration and "step" in r]
    return rows[-1]["step"] if rows else None


def _lineage(lines: list[list], tag: str, last_iteration: int) -> list[tuple[int, dict]] | None:
    """``[(after_iteration, config)]`` that produced ``tag``'s state at ``last_iteration``, from ``pbt_global.txt``.

    A line ``[target, clone, target_iter, clone_iter, clone_config, new_config]`` says: the target took the clone's
    checkpoint at ``clone_iter`` and went on with ``new_config``. Only exploits before the target's last report count
    (one that restored weights of the last iteration or later changed nothing that was reported); the clone's own
    history before is followed back.
    """
    changes: list[tuple[int, dict]] = []
    before, first = len(lines), None
    while True:
        # Ray logs the target's last known iteration, which can lag behind by one: check the clone's as well.
        found = [i for i in range(before) if lines[i][0] == tag and max(lines[i][2], lines[i][3]) < last_iteration]
        if not found:
            break
        i = found[-1]
        _, clone, _, clone_iteration, clone_config, new_config = lines[i]
        changes.append((int(clone_iteration), new_config))
        tag, last_iteration, before, first = clone, int(clone_iteration), i, clone_config
    return [(0, first), *reversed(changes)] if changes else None


def pbt_schedule(run_dir: str | Path, row: Row, spec: Spec) -> list[dict[str, Any]]:
    """The configs a PBT trial's weights were trained with, from which report on: ``[{after_iteration, from_step?,
    config}]``.

    Read from Ray's ``pbt_global.txt`` (every exploit, in order), following the trial's lineage back through the trials
    it copied; without exploits, from the configs in the trial's own reports. ``after_iteration`` k: the config applies
    from report k+1 on; ``from_step``: the ``step`` the trial reported at iteration k.
    """
    history = read_history(Path(row.path or ""))
    log = Path(run_dir) / "pbt_global.txt"
    changes = None
    if log.is_file() and row.tag:
        lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        changes = _lineage(lines, row.tag, row.training_iteration)
    if changes is None:
        changes = []
        for result in history:
            config = result.get("config") or {}
            if not changes or trial_params(config, spec) != trial_params(changes[-1][1], spec):
                # the first config applies from the start, even when Ray's result.json lost the first reports
                changes.append((int(result.get("training_iteration", 1)) - 1 if changes else 0, config))
    schedule = []
    for after, config in changes:
        entry: dict[str, Any] = {"after_iteration": after}
        step = _step_at(history, after) if after else 0
        if step is not None:
            entry["from_step"] = step
        entry["config"] = yaml_safe(nested(trial_params(config, spec)))
        schedule.append(entry)
    return schedule


__all__ = ["pbt_schedule"]
