"""``search extend``: more trials into a finished sweep's run directory, none of its trials run again."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from search.errors import SpecError, UserError
from search.rundir import EXTENSION, read_run
from search.sections import SECTIONS
from search.spec import validate
from search.spec.layers import apply_set
from search.spec.params import GRID_KEY
from search.storage import Remote
from search.tune.plan import Plan, plan
from search.tune.registry import complete_metric
from search.tune.runner import launch


def extend(
    run_dir: str | Path,
    *,
    run_cap: int | None = None,
    overrides: list[str] = (),
    address: str | None = None,
    progress: bool = True,
) -> tuple[Any, Path | Remote]:
    """Run more trials into a finished sweep's run directory; none of its trials runs again.

    A random or bayes sweep runs ``run_cap`` more trials: hyperopt starts from the finished trials' configs and
    results as finished trials of its own (``registry.build_search_alg``), random search draws with a new seed. A grid runs the
    combinations of its grid (changed with ``overrides``, e.g. ``parameters.num_beams={values: [4, 8, 12]}``) that
    have not finished. The new trials are a run of their own in ``RUN_DIR/extend`` (``extend-2``, ...), which
    ``rank`` reads with the run's own trials as one table. ``Tuner.restore`` cannot add trials (Ray issue 42221).
    """
    from search.report import FINISHED, rank

    saved = read_run(run_dir)
    raw = copy.deepcopy(dict(saved.spec.raw))
    for item in overrides:
        raw = apply_set(raw, item, saved.spec.file)
    if raw.get("method") != "grid":
        if run_cap is None:
            raise SpecError(saved.location, "--run-cap", "missing: how many more trials? e.g. --run-cap 8")
        raw["run_cap"] = run_cap
        raw["seed"] = (raw.get("seed") or 0) + len(saved.trials())  # new draws, not the sweep's first ones again
    elif run_cap is not None:
        raise SpecError(saved.location, "--run-cap", "a grid runs each new combination once; add values with --set")
    spec = complete_metric(validate(raw, saved.spec.file))
    ranking = rank(saved, bootstrap=0)
    finished = [row for row in ranking.rows if row.status == FINISHED and row.value is not None]
    p = plan(spec, storage=saved.location, name=EXTENSION)
    if spec.method == "grid":
        p = _remaining_grid(p, [row.params for row in finished], saved.location)
    known = [(row.params, row.value) for row in finished] if spec.method == "bayes" else []
    return launch(spec, p, address, progress, known)


def _remaining_grid(p: Plan, done: list[dict], location: str) -> Plan:
    """``p`` with its grid cut to the combinations not among ``done`` (searched values by dotted name)."""
    from ray import tune

    from search.report import flatten
    from search.tune.space import grid_combinations

    searched = {param.name for param in p.spec.searched}
    remaining = [
        combo for combo in grid_combinations(p.spec.parameters)
        if {k: v for k, v in flatten(combo).items() if k in searched} not in done
    ]  # fmt: skip
    if not remaining:
        raise UserError(f"{location}: every combination of the grid has finished; add values with --set")
    space = {k: v for k, v in p.param_space.items() if k in SECTIONS}
    return Plan(p.spec, p.storage, p.name, {**space, GRID_KEY: tune.grid_search(remaining)}, p.trial_fn)


__all__ = ["extend"]
