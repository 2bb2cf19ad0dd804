"""What ``search validate`` prints: the resolved search space, algorithm and scheduler, as Ray Tune will get them."""

from __future__ import annotations

from typing import Any

import yaml

from search.sections import SECTIONS
from search.spec import Spec
from search.tune.registry import SCHEDULERS, SEARCH_ALGORITHMS, complete_metric, num_samples
from search.tune.space import describe, grid_size, param_space


def _space_lines(tree: Any, indent: int = 2) -> list[str]:
    lines = []
    for k, v in tree.items():
        if isinstance(v, dict) and "grid_search" not in v:
            lines.append(" " * indent + f"{k}:")
            lines += _space_lines(v, indent + 2)
        else:
            lines.append(" " * indent + f"{k}: {describe(v)}")
    return lines


def _metric_line(spec: Spec) -> str:
    """The metric trials are ranked by: the spec's, else its trainable's primary one, else none yet."""
    metric = complete_metric(spec).metric if spec.trainable else spec.metric
    if metric is None:
        return "metric: none yet (`search run` ranks by the trainable's PRIMARY_METRIC)"
    source = "" if spec.metric else f", {spec.trainable}'s PRIMARY_METRIC"
    target = "" if metric.target is None else f", the sweep stops once a trial reaches {metric.target:g}"
    return f"metric: {metric.name} ({metric.mode}{source}{target})"


def describe_spec(spec: Spec) -> str:
    out = [f"{spec.file}: valid", f"name: {spec.name}", _metric_line(spec)]
    alg = SEARCH_ALGORITHMS[spec.method].rpartition(":")[2]
    if spec.method == "grid":
        out.append(f"search: grid via {alg}, {grid_size(spec.parameters)} combinations")
    else:
        out.append(f"search: {spec.method} via {alg}, num_samples={num_samples(spec)}, seed={spec.seed}")
    if spec.max_concurrent:
        out.append(f"max_concurrent: {spec.max_concurrent}")
    sched = SCHEDULERS[spec.scheduler.type].target.rpartition(":")[2]
    opts = ", ".join(f"{k}={v}" for k, v in spec.scheduler.options.items())
    out.append(f"scheduler: {spec.scheduler.type} -> {sched}({opts})")
    out.append(f"trainable: {spec.trainable or '(none: give one with --set trainable=NAME to run)'}")
    out.append(f"resources per trial: cpu={spec.resources.cpu:g} gpu={spec.resources.gpu:g}")
    out.append("param_space:")
    out += _space_lines(param_space(spec.parameters, spec.method))
    if spec.method == "bayes":
        out.append("hyperopt space (HyperOptSearch, TPE):")
        out += [f"  {p.name}: {p.dist.describe()}" for p in spec.searched]
    for p in spec.parameters:
        if p.when:
            conds = " and ".join(f"{'.'.join(path)} in {list(vals)}" for path, vals in p.when)
            out.append(f"condition: {p.name} only when {conds}")
    for section in SECTIONS:
        value = getattr(spec, section)
        if value:
            out.append(f"{section}: " + yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip())
    if spec.extra:
        out.append("kept W&B keys: " + ", ".join(spec.extra))
    return "\n".join(out)
