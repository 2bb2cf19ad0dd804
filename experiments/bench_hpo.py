"""What each search method buys on the shipped corpus: grid vs random vs bayes (hyperopt) + ASHA vs PBT, measured.

Every method fine-tunes the same small transformer (DESIGN.md's 2+2 layers, d_model 128, 2k BPE) from scratch on
bible-en-es with the same per-trial budget (``max_steps`` optimizer steps of ``batch_tokens`` padded tokens, a dev
report every ``eval_every`` steps on the first ``eval_size`` dev pairs, greedy), through the real CLI (``search run``,
2 trial slots of 1 CPU each). Random, bayes and PBT search the default space ``spaces/finetune.yaml`` (batch_tokens
fixed, so that a step costs the same in every trial); the grid crosses three encoder and three decoder learning rates.

For each method and seed it reports the best dev BLEU (the winner's best report, as ``search rank --scope best``), the
winner's test BLEU (its best checkpoint, greedy, on the whole test split: the only time the test split is read),
trial CPU-minutes (the trials' own ``cpu_s`` reports summed), wall time, trials and reports, the sweep's CPU
utilisation (trial CPU / (wall x cores)) and the idle core-seconds per trial (Ray start-up, scheduling, trial
start-up and PBT's synchronous waits), and the trial CPU-minutes each method took to first reach the grid's best dev
BLEU. It writes ``table.md``, ``best_so_far.png`` (best dev BLEU so far against trial CPU-minutes) and
``results.json`` to ``--out``.

    python experiments/bench_hpo.py                 # ~40 minutes on 2 cores, one seed
    python experiments/bench_hpo.py --seeds 0,1,2   # repeats: mean and range per method (~2 hours)
    python experiments/bench_hpo.py --smoke-test    # tiny model, a few steps (~2 minutes)

Wall times and utilisation need an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CORES = 2  # trial slots x CPUs per trial: what the sweeps are given
MODEL = {"arch": "bart", "d_model": 128, "layers": 2, "heads": 4, "ffn": 512, "vocab_size": 2000, "max_length": 128}
SETTINGS = {"max_steps": 1200, "eval_every": 300, "eval_size": 200, "num_beams": 1, "max_new_tokens": 64}
FIXED = {"batch_tokens": {"value": 1000}}  # the same work per step in every trial of every method
LRS = [1.0e-3, 3.0e-3, 9.0e-3]  # the grid: encoder_lr x decoder_lr, batch_tokens FIXED, the rest at the defaults
METHODS = {
    "grid": {
        "method": "grid",
        "parameters": {**FIXED, "encoder_lr": {"values": LRS}, "decoder_lr": {"values": LRS}},
    },
    "random": {"space": "spaces/finetune.yaml", "method": "random", "run_cap": 4, "parameters": FIXED},
    "bayes+asha": {
        "space": "spaces/finetune.yaml",
        "method": "bayes",
        "run_cap": 8,
        # as experiments/finetune_asha.yaml: the first cut after 2 reports, a third goes on (one report of 300
        # steps cut trials that went on to pass 12 BLEU)
        "scheduler": {"type": "asha", "max_t": 4, "grace_period": 2, "reduction_factor": 3},
        "parameters": FIXED,
    },
    "pbt": {
        "space": "spaces/finetune.yaml",
        "method": "random",
        "run_cap": 4,
        # as experiments/finetune_pbt.yaml: schedule-shaping keys fixed so that the population stays comparable, at
        # the values of the random and bayes trials that did best (0 and 100 left seed 0's population below 11.5)
        "parameters": {**FIXED, "freeze_encoder_steps": {"value": 100}, "warmup_steps": {"value": 200}},
        "scheduler": {
            "type": "pbt",
            "perturbation_interval": 1,
            "quantile_fraction": 0.25,
            "resample_probability": 0.25,
            "synch": True,
        },  # fmt: skip
    },
}
SMOKE = {
    "model": {"d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 400},
    "settings": {"max_steps": 20, "eval_every": 10, "eval_size": 16, "train_size": 500, "max_new_tokens": 16},
    "grid_lrs": LRS[1:],
    "run_cap": 2,
    "max_t": 2,
    "test_limit": 32,
}


def method_spec(method: str, seed: int, smoke: bool) -> dict:
    """The sweep file of one method (a plain mapping, written as YAML for ``search run``)."""
    spec = {
        "name": f"{method.replace('+', '-')}-seed{seed}",
        "trainable": "finetune",
        "metric": {"name": "bleu", "goal": "maximize"},
        "max_concurrent": CORES,
        "resources": {"cpu": 1},
        "seed": seed,
        "checkpoint": {"keep": 2},
        "model": dict(MODEL),
        "data": {"corpus": "bible-en-es"},
        "settings": dict(SETTINGS),
        **json.loads(json.dumps(METHODS[method])),  # a deep copy
    }
    if spec.get("scheduler", {}).get("type") == "pbt":
        del spec["max_concurrent"]  # a population runs together; resources.cpu bounds it to the cores
    if "space" in spec:
        spec["space"] = str(ROOT / spec["space"])
    spec["parameters"]["seed"] = {"value": seed}  # a repeat varies initialisation and batch order too
    if smoke:
        spec["model"].update(SMOKE["model"])
        spec["settings"].update(SMOKE["settings"])
        if method == "grid":
            spec["parameters"] = {**FIXED, "encoder_lr": {"values": SMOKE["grid_lrs"]}, "seed": {"value": seed}}
        else:
            spec["run_cap"] = SMOKE["run_cap"]
        if spec.get("scheduler", {}).get("type") == "asha":
            spec["scheduler"]["max_t"] = SMOKE["max_t"]
    return spec


def run_method(method: str, seed: int, out: Path, smoke: bool) -> tuple[Path, float]:
    """Run one method's sweep through the CLI; return its run directory and wall seconds."""
    spec = method_spec(method, seed, smoke)
    spec_file = out / "specs" / f"{spec['name']}.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    log = out / "logs" / f"{spec['name']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{method} (seed {seed}): running; log {log}", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "search", "run", str(spec_file), "--storage", str(out / "runs")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with log.open("w") as handle:  # the CLI of this checkout (and its Ray workers), whatever is installed
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{method} (seed {seed}): search run failed with exit code {done.returncode}; see {log}")
    said = [line for line in log.read_text().splitlines() if line.startswith("run directory: ")]
    return Path(said[-1].removeprefix("run directory: ")), wall


def reports(run) -> list[dict]:
    """Every report of every trial, in the order they were made: ``{trial, bleu, cpu_s, time}``."""
    rows = []
    for trial in run.trials():
        for result in trial.history():
            if isinstance(result.get("bleu"), int | float):
                rows.append({"trial": trial.trial_id, "bleu": float(result["bleu"]),
                             "cpu_s": float(result.get("cpu_s", 0.0)), "time": float(result.get("timestamp", 0))})  # fmt: skip
    return sorted(rows, key=lambda r: r["time"])


def best_so_far(rows: list[dict]) -> list[tuple[float, float]]:
    """``(trial CPU-minutes spent, best dev BLEU so far)`` after each report.

    Example:
        >>> best_so_far([{"bleu": 2.0, "cpu_s": 60}, {"bleu": 1.0, "cpu_s": 30}, {"bleu": 3.0, "cpu_s": 30}])
        [(1.0, 2.0), (1.5, 2.0), (2.0, 3.0)]
    """
    curve, cpu, best = [], 0.0, float("-inf")
    for row in rows:
        cpu, best = cpu + row["cpu_s"], max(best, row["bleu"])
        curve.append((cpu / 60, best))
    return curve


def cpu_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """Trial CPU-minutes after which the best so far first reached ``target`` (None: never), both to the 2 decimals
    BLEU is reported with.

    Example:
        >>> cpu_to_reach([(1.0, 2.0), (1.5, 2.0), (2.0, 2.996)], 3.0), cpu_to_reach([(1.0, 2.0)], 2.5)
        (2.0, None)
    """
    return next((cpu for cpu, best in curve if round(best, 2) >= round(target, 2)), None)


def report_agreement(histories: list[list[float]]) -> list[float]:
    """For each report before the last, the share of pairs of trials (of equal length) it orders as their last report
    does (a tie at the report counts half; pairs tied at the end are left out): how well a cut at that report (ASHA's
    rung) keeps the better trial.

    Example:
        >>> report_agreement([[1.0, 5.0, 9.0], [2.0, 4.0, 8.0], [0.0, 6.0, 10.0]])
        [0.0, 1.0]
    """
    pairs = [(a, b) for i, a in enumerate(histories) for b in histories[i + 1 :] if a[-1] != b[-1]]
    steps = len(histories[0]) - 1 if histories else 0
    agree = [0.0] * steps
    for a, b in pairs:
        for k in range(steps):
            order = (a[k] - b[k]) * (a[-1] - b[-1])
            agree[k] += 1.0 if order > 0 else 0.5 if order == 0 else 0.0
    return [round(n / len(pairs), 3) for n in agree] if pairs else []


def full_histories(results: list[dict], methods: tuple[str, ...] = ("grid", "random")) -> list[list[float]]:
    """Dev BLEU at each report of every trial of ``methods`` (by default the ones where every trial runs the whole
    budget, none selected by a scheduler)."""
    from search.rundir import read_run

    by_trial: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if r["method"] in methods:
            for row in reports(read_run(r["run_dir"])):
                by_trial.setdefault((r["run_dir"], row["trial"]), []).append(row["bleu"])
    longest = max(map(len, by_trial.values()), default=0)
    return [h for h in by_trial.values() if len(h) == longest]  # a trial that failed early is left out


def test_bleu(run, trial_id: str, limit: int | None, cache_dir: Path) -> float:
    """BLEU of the trial's best checkpoint (by dev BLEU) on the test split, greedy."""
    from transformers.utils import logging as hf_logging

    from search.trainables.checkpoints import model_dir
    from search.trainables.decode import decode_and_score

    hf_logging.disable_progress_bar()

    checkpoint = run.trial(trial_id).best_checkpoint("bleu", "max")
    settings = {"split": "test", "limit": limit, "batch_size": 64, "cache_dir": str(cache_dir), "metrics": ["bleu"]}
    config = {"model": str(model_dir(checkpoint)), "data": {"corpus": "bible-en-es"}, "num_beams": 1,
              "settings": {**settings, "max_new_tokens": run.spec.settings.get("max_new_tokens", 64)}}  # fmt: skip
    return float(decode_and_score(config)[0]["bleu"])


def summarize(method: str, seed: int, run_dir: Path, wall: float, smoke: bool, cache_dir: Path) -> dict:
    """The figures of one method's run."""
    from search.report import rank
    from search.rundir import read_run

    run = read_run(run_dir)
    rows = reports(run)
    best = rank(run, scope="best", bootstrap=0).best
    cpu_s = sum(r["cpu_s"] for r in rows)
    trials = len(run.trials())
    return {
        "method": method,
        "seed": seed,
        "best_dev_bleu": round(best.value, 2),
        "test_bleu": round(test_bleu(run, best.trial_id, SMOKE["test_limit"] if smoke else None, cache_dir), 2),
        "winner": best.params,
        "cpu_min": round(cpu_s / 60, 2),
        "wall_min": round(wall / 60, 2),
        "trials": trials,
        "reports": len(rows),
        "utilisation": round(cpu_s / (wall * CORES), 3),
        "idle_core_s_per_trial": round((wall * CORES - cpu_s) / max(trials, 1), 1),
        "curve": best_so_far(rows),
        "run_dir": str(run_dir),
    }


def _spread(values: list[float]) -> str:
    """``mean`` for one value or equal ones, ``mean (min-max)`` for repeats that differ.

    Example:
        >>> _spread([9, 9]), _spread([0.808, 0.825])
        ('9', '0.82 (0.81-0.82)')
    """
    mean, digits = statistics.fmean(values), 0 if all(isinstance(v, int) for v in values) else 2
    if len(set(values)) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(results: list[dict], settings: dict) -> str:
    """The Markdown table: one row per method, repeats as mean (min-max)."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    grid_cpu = {r["seed"]: r["cpu_min"] for r in results if r["method"] == "grid"}
    lines = [
        "| method | trials | best dev BLEU | winner's test BLEU | trial CPU-min | wall min | CPU utilisation "
        "| idle core-s / trial | CPU-min to grid's best (share of grid's) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method in methods:
        mine = [r for r in results if r["method"] == method]
        reach = [
            f"{r['cpu_to_grid_best']:.1f} ({r['cpu_to_grid_best'] / grid_cpu[r['seed']]:.2f})"
            if r.get("cpu_to_grid_best") is not None else "never"
            for r in mine
        ]  # fmt: skip
        keys = ("trials", "best_dev_bleu", "test_bleu", "cpu_min", "wall_min", "utilisation", "idle_core_s_per_trial")
        cells = [_spread([r[key] for r in mine]) for key in keys]
        lines.append(f"| {method} | {' | '.join(cells)} | {', '.join(reach)} |")
    seeds = sorted({r["seed"] for r in results})
    lines.append("")
    lines.append(
        f"Seeds {', '.join(map(str, seeds))} ({len(seeds)} repeat{'s' if len(seeds) > 1 else ''}; repeats show mean "
        f"(min-max)). Per trial: {settings['max_steps']} steps of {FIXED['batch_tokens']['value']} padded tokens, "
        f"a dev report every {settings['eval_every']} steps on the first {settings['eval_size']} dev pairs (greedy); "
        f"{CORES} trial slots of 1 CPU. Test BLEU: the winner's best checkpoint, greedy, on the test split."
    )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], out: Path) -> Path:
    """Best dev BLEU so far against trial CPU-minutes, one line per method and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = dict(zip(METHODS, ("tab:gray", "tab:orange", "tab:blue", "tab:green"), strict=True))
    labelled = set()
    for r in results:
        if not r["curve"]:
            continue
        xs, ys = zip(*r["curve"], strict=True)
        label = None if r["method"] in labelled else r["method"]
        labelled.add(r["method"])
        ax.step(xs, ys, where="post", color=colors[r["method"]], label=label, alpha=0.9)
    ax.set_xlabel("trial CPU-minutes")
    ax.set_ylabel("best dev BLEU so far")
    ax.set_title("Search methods on bible-en-es (same per-trial budget)")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out / "best_so_far.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each is one repeat of every method")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--out", help="output directory (default: runs/bench_hpo/<time>); an earlier one goes on")
    parser.add_argument("--json", action="store_true", help="print one JSON object per method and seed")
    parser.add_argument("--smoke-test", action="store_true", help="tiny model, a few steps, 2 trials per method")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "grid" not in methods:
        parser.exit(2, f"--methods: {'unknown ' + unknown[0] if unknown else 'grid is the baseline and must be in'}; "
                       f"choose from {', '.join(METHODS)}\n")  # fmt: skip
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out or ROOT / "runs" / "bench_hpo" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in seeds:
        for method in methods:
            # A method this --out already finished is read back, not run again (an interrupted benchmark goes on).
            kept = out / "summaries" / f"{method_spec(method, seed, args.smoke_test)['name']}.json"
            if kept.is_file():
                results.append(json.loads(kept.read_text()))
                print(f"{method} (seed {seed}): read from {kept}", file=sys.stderr, flush=True)
                continue
            run_dir, wall = run_method(method, seed, out, args.smoke_test)
            results.append(summarize(method, seed, run_dir, wall, args.smoke_test, out / "cache"))
            kept.parent.mkdir(exist_ok=True)
            kept.write_text(json.dumps(results[-1]))
            r = results[-1]
            print(f"{method} (seed {seed}): best dev BLEU {r['best_dev_bleu']}, test BLEU {r['test_bleu']}, "
                  f"{r['trials']} trials, {r['cpu_min']} trial CPU-min, {r['wall_min']} min wall, "
                  f"utilisation {r['utilisation']}", file=sys.stderr, flush=True)  # fmt: skip
    for r in results:
        grid = next(g for g in results if g["method"] == "grid" and g["seed"] == r["seed"])
        r["cpu_to_grid_best"] = cpu_to_reach(r["curve"], grid["best_dev_bleu"])
        if args.json:
            print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
    settings = {**SETTINGS, **(SMOKE["settings"] if args.smoke_test else {})}
    text = table(results, settings)
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(text, end="")
    agreement = report_agreement(full_histories(results))
    said = ", ".join(f"report {k + 1} {a}" for k, a in enumerate(agreement)) or "no pair differs at the end"
    print(f"ASHA's evidence: the share of pairs of grid and random trials that each report orders as the last one "
          f"does: {said}")  # fmt: skip
    print(f"wrote {out / 'table.md'}, {plot(results, out)}, {out / 'results.json'}")


if __name__ == "__main__":
    main()
