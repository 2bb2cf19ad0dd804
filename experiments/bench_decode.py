"""Time the naive decoding sweep (one ``generate()`` per config, as run_eval_search.py did) against one exact beam
pass per ``num_beams`` (``search.decoding.decode_configs``), on the same model, dev batches and threads; then a
continuous TPE search replayed from recorded passes, and the same grid through the real CLI (``search run``).

Grids: the 48-config seed grid (num_beams 5,8,11,15 x length_penalty 0.6..1.1 x early_stopping true,false) and the
72-config grid that adds early_stopping "never". For every config the corpus BLEU of both ways must be identical.
The grid's *limit* is one beam pass per distinct num_beams that runs as long as its longest config: per num_beams,
the slowest of that group's plain ``generate()`` times, summed (``limit_ratio`` = fast / limit, 1.0 at best;
``limit_cpu_ratio`` the same in process CPU time, robust to other load; ``limit_cpu_ratio_by_beams`` per num_beams).
The slowest config of each group (by the naive runs) is run again beside the group's pass, batch by batch in
alternating order, and that time is the limit: this VM's speed drifts by 10-15% over the minutes between the naive
runs and ours (``limit_naive_s``: the limit from the naive runs themselves).

Continuous: hyperopt's TPE (fixed seed) over length_penalty in [0.3, 2.0] x early_stopping {true, false} x num_beams
{4, 8}, ``--samples`` samples maximizing BLEU. Naive: one ``generate()`` per sample. Ours: per num_beams one recorded
pass long enough for the whole range (``configs.horizon``, as the decode trainable runs it), every sample replayed
from the records without the model (decoded when not covered: ``fallbacks``). Decoder forward steps are counted.

CLI: the 48-config grid through ``search run`` (2 trial slots of 1 CPU, a fresh decode cache), against the in-process
one-pass time of that grid (1 thread): ``--cli-runs`` CLI runs, each between two in-process runs (the VM's speed
drifts by 10-15% within minutes); each run's ratio is to the mean of its neighbours, the median is reported.

    python experiments/bench_decode.py --sentences 300 --threads 1 --json   # the shipped model (experiments/models)
    python experiments/bench_decode.py --model DIR --grids 48 --no-cli
    python experiments/bench_decode.py --smoke-test     # shipped model, 8 sentences, small grids (~1 min, Ray start)

Wall times need an otherwise idle machine; ``cpu_ratio`` (process CPU time, 1 thread) is robust to other load.
Peak memory is the peak resident-set growth of the process during each way (sampled every 5 ms), in MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = ROOT / "experiments" / "models" / "bible-en-es-small"  # shipped: the finetune_asha winner
SEED_GRID = {"num_beams": [5, 8, 11, 15], "length_penalty": [0.6, 0.7, 0.8, 0.9, 1.0, 1.1]}
# The continuous search of issue 12: length_penalty uniform x early_stopping x num_beams, TPE with a fixed seed.
CONTINUOUS = {"length_penalty": (0.3, 2.0), "early_stopping": [True, False], "num_beams": [4, 8]}
TPE_SEED = 0


def grid(early_stopping: list) -> list[dict]:
    return [
        {"num_beams": nb, "length_penalty": lp, "early_stopping": es}
        for nb in SEED_GRID["num_beams"]
        for lp in SEED_GRID["length_penalty"]
        for es in early_stopping
    ]


class PeakRSS:
    """Peak resident-set growth (MiB) of this process while the block runs."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = (self.peak - self.base) / 2**20

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class DecoderSteps:
    """Counts the decoder's forward calls (one per generation step, whatever the beams) while the block runs."""

    def __init__(self, model):
        self.decoder, self.count = model.get_decoder(), 0

    def __enter__(self) -> DecoderSteps:
        self._hook = self.decoder.register_forward_hook(lambda *_: self._add())
        return self

    def _add(self) -> None:
        self.count += 1

    def __exit__(self, *exc) -> None:
        self._hook.remove()


def texts(tokenizer, batches, outputs) -> list[str]:
    """Top hypothesis of each input, in dev-set order."""
    hyps = [""] * sum(len(chunk) for chunk, _ in batches)
    for (chunk, _), out in zip(batches, outputs, strict=True):
        per_input = out.shape[0] // len(chunk)
        for i, text in zip(chunk, tokenizer.batch_decode(out[::per_input], skip_special_tokens=True), strict=True):
            hyps[i] = text.strip()
    return hyps


def model_bleu(model, tokenizer, batches, references, shared: dict) -> float:
    """Greedy dev BLEU of the benched model on the benched sentences."""
    import torch

    from search.metrics import corpus_scores

    with torch.no_grad():
        outs = [model.generate(**inputs, **shared, num_beams=1) for _, inputs in batches]
    return round(corpus_scores(texts(tokenizer, batches, outs), references)["bleu"], 2)


def fast_way(model, batches, configs: list[dict], shared: dict, limit_of=None) -> tuple[list[list], dict]:
    """One pass per num_beams, batch by batch: every config's output tensors, and ``{"fast": (wall, cpu),
    "limit": (wall, cpu), "limit_cpu_ratio_by_beams": {nb: ratio}, "peak_mib": ...}`` (seconds; the peak
    resident-set growth of a pass).

    With ``limit_of(members) -> config`` (the group's slowest plain config), each batch's pass and that config's
    plain ``generate()`` on the same batch (the limit) run side by side, in alternating order (the pass first on
    even batches, the limit first on odd ones): this VM's speed drifts by 10-15% within minutes, and seconds apart
    the two see the same machine. An untimed ``generate()`` of the group's ``num_beams`` first grows the allocator's
    buffers, which whichever ran first after another ``num_beams`` would otherwise pay."""
    import torch

    from search.decoding import decode_configs

    by_beams: dict[int, list[int]] = {}
    for i, c in enumerate(configs):
        by_beams.setdefault(c["num_beams"], []).append(i)
    fast: list[list] = [[] for _ in configs]
    total = {"ours": [0.0, 0.0], "limit": [0.0, 0.0]}  # [wall, cpu] seconds
    cpu_by_beams: dict[int, dict[str, list[float]]] = {}
    peak_mib = 0.0
    for nb, members in by_beams.items():
        group = [configs[i] for i in members]
        slowest = limit_of(group) if limit_of is not None else None
        mine = cpu_by_beams[nb] = {"ours": [0.0, 0.0], "limit": [0.0, 0.0]}
        if slowest is not None:
            with torch.no_grad():
                model.generate(**batches[0][1], **shared, **slowest)
        for b, (_, inputs) in enumerate(batches):
            ways = ["ours"] if slowest is None else ["ours", "limit"] if b % 2 == 0 else ["limit", "ours"]
            for way in ways:
                # Both ways run under the memory sampler: its thread's CPU time is charged to either alike.
                with _timed(total[way], mine[way]), PeakRSS() as memory, torch.no_grad():
                    if way == "limit":
                        model.generate(**inputs, **shared, **slowest)
                        continue
                    outs = decode_configs(model, inputs, group, shared)
                peak_mib = max(peak_mib, memory.mib)
                for i, out in zip(members, outs, strict=True):
                    fast[i].append(out.sequences)
    ratios = {nb: round(t["ours"][1] / t["limit"][1], 3) for nb, t in cpu_by_beams.items() if t["limit"][1]}
    return fast, {"fast": tuple(total["ours"]), "limit": tuple(total["limit"]), "limit_cpu_ratio_by_beams": ratios,
                  "peak_mib": peak_mib}  # fmt: skip


@contextlib.contextmanager
def _timed(*totals: list[float]):
    """Add the block's wall and process CPU seconds to each of ``totals`` (``[wall, cpu]`` lists)."""
    began = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - began[0], time.process_time() - began[1]
    for total in totals:
        total[0] += wall
        total[1] += cpu


def key_of(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def naive_way(model, batches, configs: list[dict], shared: dict) -> dict:
    """One ``generate()`` per config over every batch: ``{"outputs": {key: outputs}, "times": {key: (wall, cpu)},
    "steps": {key: decoder steps}, "peak_mib": ...}``; a grid's figures are read from it for the grid's configs (the 48 grid is part of the 72)."""
    import torch

    outputs, times, steps = {}, {}, {}
    with PeakRSS() as memory, torch.no_grad():
        for c in configs:
            began = time.perf_counter(), time.process_time()
            with DecoderSteps(model) as counted:
                outputs[key_of(c)] = [model.generate(**inputs, **shared, **c) for _, inputs in batches]
            times[key_of(c)] = (time.perf_counter() - began[0], time.process_time() - began[1])
            steps[key_of(c)] = counted.count
    return {"outputs": outputs, "times": times, "steps": steps, "peak_mib": memory.mib}


def bench(model, tokenizer, batches, references, configs: list[dict], shared: dict, done: dict) -> dict:
    """Both ways on one grid (the naive way's runs ``done`` by :func:`naive_way`): seconds, ratio, the limit,
    identical BLEU per config, peak memory."""
    import torch

    from search.metrics import corpus_scores

    naive = [done["outputs"][key_of(c)] for c in configs]
    config_s = [done["times"][key_of(c)] for c in configs]
    naive_s, naive_cpu = (sum(times) for times in zip(*config_s, strict=True))
    # The limit: one pass per num_beams as long as its longest config, i.e. the group's slowest generate() (the
    # most decoder steps, then the naive runs' CPU time), run again beside the group's pass; the naive runs' own
    # figure is kept beside it.
    slowest: dict[int, tuple[float, float]] = {}
    for c, (wall, cpu_s) in zip(configs, config_s, strict=True):
        before = slowest.get(c["num_beams"], (0.0, 0.0))
        slowest[c["num_beams"]] = (max(before[0], wall), max(before[1], cpu_s))
    limit_naive_s, limit_naive_cpu = (sum(times) for times in zip(*slowest.values(), strict=True))

    def limit_of(members: list[dict]) -> dict:
        return max(members, key=lambda c: (done["steps"][key_of(c)], done["times"][key_of(c)][1]))

    fast, seconds = fast_way(model, batches, configs, shared, limit_of)
    (fast_s, fast_cpu), (limit_s, limit_cpu) = seconds["fast"], seconds["limit"]
    bleu_naive = [corpus_scores(texts(tokenizer, batches, o), references)["bleu"] for o in naive]
    bleu_fast = [corpus_scores(texts(tokenizer, batches, o), references)["bleu"] for o in fast]
    tokens_identical = all(
        torch.equal(a, b) for n, f in zip(naive, fast, strict=True) for a, b in zip(n, f, strict=True)
    )
    best = max(range(len(configs)), key=lambda i: bleu_fast[i])
    return {
        "configs": len(configs),
        "naive_s": round(naive_s, 2),
        "fast_s": round(fast_s, 2),
        "limit_s": round(limit_s, 2),
        "ratio": round(naive_s / fast_s, 2),
        "limit_ratio": round(fast_s / limit_s, 3),
        "limit_cpu_s": round(limit_cpu, 2),
        "limit_cpu_ratio": round(fast_cpu / limit_cpu, 3),
        "limit_cpu_ratio_by_beams": seconds["limit_cpu_ratio_by_beams"],
        # the limit from the naive runs, minutes before ours (drift included)
        "limit_naive_s": round(limit_naive_s, 2),
        "limit_naive_cpu_s": round(limit_naive_cpu, 2),
        # CPU seconds of this process: with 1 thread, robust to other load on the machine (wall time is not).
        "naive_cpu_s": round(naive_cpu, 2),
        "fast_cpu_s": round(fast_cpu, 2),
        "cpu_ratio": round(naive_cpu / fast_cpu, 2),
        "bleu_identical": bleu_naive == bleu_fast,
        "tokens_identical": tokens_identical,
        "naive_peak_mib": round(done["peak_mib"], 1),  # of the naive runs of every grid
        "fast_peak_mib": round(seconds["peak_mib"], 1),  # the largest growth during one pass
        "best": {**configs[best], "bleu": round(bleu_fast[best], 2)},
        "distinct_bleu": len(set(bleu_fast)),
    }


def tpe_search(objective, samples: int) -> list[tuple[dict, float]]:
    """hyperopt's TPE over :data:`CONTINUOUS` (seed :data:`TPE_SEED`): ``(config, bleu)`` of every sample, in order."""
    import numpy as np
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe

    space = {
        "length_penalty": hp.uniform("length_penalty", *CONTINUOUS["length_penalty"]),
        "early_stopping": hp.choice("early_stopping", CONTINUOUS["early_stopping"]),
        "num_beams": hp.choice("num_beams", CONTINUOUS["num_beams"]),
    }
    seen: list[tuple[dict, float]] = []

    def loss(point: dict) -> dict:
        config = {"num_beams": int(point["num_beams"]), "length_penalty": float(point["length_penalty"]),
                  "early_stopping": bool(point["early_stopping"])}  # fmt: skip
        bleu = objective(config)
        seen.append((config, bleu))
        return {"loss": -bleu, "status": STATUS_OK}

    fmin(loss, space, algo=tpe.suggest, max_evals=samples, trials=Trials(),
         rstate=np.random.default_rng(TPE_SEED), show_progressbar=False)  # fmt: skip
    return seen


def bench_continuous(model, tokenizer, batches, references, shared: dict, samples: int) -> dict:
    """The TPE search both ways: decoder steps, seconds, identical scores (and so identical samples), fallbacks."""
    import torch

    from search.decoding import decode_configs, plan_of
    from search.decoding.beam import NotCovered, PassRecords
    from search.decoding.configs import horizon
    from search.metrics import corpus_scores

    def bleu(outputs: list) -> float:
        return corpus_scores(texts(tokenizer, batches, outputs), references)["bleu"]

    def naive(config: dict) -> float:
        with torch.no_grad():
            return bleu([model.generate(**inputs, **shared, **config) for _, inputs in batches])

    with DecoderSteps(model) as naive_steps:
        start = time.perf_counter()
        naive_seen = tpe_search(naive, samples)
        naive_s = time.perf_counter() - start

    # Ours: as the decode trainable runs a continuous plan (``_pass_compute``, then ``_decoded``'s replay).
    plan = plan_of(dict(CONTINUOUS))
    fallbacks = 0
    with DecoderSteps(model) as our_steps:
        start = time.perf_counter()
        stored: dict = {"batches": {}}
        for nb in CONTINUOUS["num_beams"]:  # one recorded pass per num_beams, long enough for the whole range
            reach, to_end = horizon(plan, {"num_beams": nb})
            records = PassRecords(horizon=reach, to_end=to_end)
            for _, inputs in batches:
                decode_configs(model, inputs, reach or [{"num_beams": nb}], shared, records)
            stored["batches"].update(records.stored()["batches"])

        def ours(config: dict) -> float:
            nonlocal fallbacks
            try:
                replay = PassRecords(stored, replay_only=True)
                outs = [decode_configs(model, inputs, [config], shared, replay)[0] for _, inputs in batches]
            except NotCovered:
                fallbacks += 1
                outs = [decode_configs(model, inputs, [config], shared)[0] for _, inputs in batches]
            return bleu([out.sequences for out in outs])

        our_seen = tpe_search(ours, samples)
        fast_s = time.perf_counter() - start
    best = max(our_seen, key=lambda seen: seen[1])
    return {
        "continuous": True,
        "samples": samples,
        "steps_naive": naive_steps.count,
        "steps_ours": our_steps.count,
        "step_ratio": round(naive_steps.count / max(our_steps.count, 1), 2),
        "naive_s": round(naive_s, 2),
        "fast_s": round(fast_s, 2),
        "ratio": round(naive_s / fast_s, 2),
        "scores_identical": naive_seen == our_seen,  # same scores, so TPE proposed the same samples
        "fallbacks": fallbacks,
        "best": {**best[0], "length_penalty": round(best[0]["length_penalty"], 4), "bleu": round(best[1], 2)},
    }


def cli_spec(model_dir: Path, configs: list[dict], args: argparse.Namespace) -> dict:
    """A sweep of the grid ``configs`` for ``search run``: 2 trial slots of 1 CPU, as experiments/decode_seed_grid.yaml."""
    values = {key: sorted({c[key] for c in configs}, key=repr) for key in configs[0]}
    return {
        "name": "bench_decode_cli", "method": "grid", "metric": {"name": "bleu", "goal": "maximize"},
        "parameters": {key: {"values": v} for key, v in values.items()}, "trainable": "decode",
        "max_concurrent": 2, "resources": {"cpu": 1}, "seed": 0, "model": str(model_dir),
        "data": {"corpus": "bible-en-es"},
        "settings": {"split": "dev", "limit": args.sentences, "batch_size": args.batch_size,
                     "max_new_tokens": args.max_new_tokens},
    }  # fmt: skip


def bench_cli(model_dir: Path, configs: list[dict], args: argparse.Namespace, inprocess) -> dict:
    """The grid through ``search run`` in a subprocess, its storage (and so its decode cache, ``storage/.cache``)
    fresh in a temporary directory, ``args.cli_runs`` times: wall seconds against the in-process one-pass seconds,
    ``inprocess()`` timed before the first CLI run and after each (this VM's speed drifts by 10-15% within
    minutes). Each CLI run is compared with the mean of the in-process runs next to it; the medians are reported."""
    import yaml

    inprocess_runs, cli_runs, ratios = [inprocess()["fast"][0]], [], []
    for _ in range(args.cli_runs):
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            spec = Path(tmp) / "grid.yaml"
            spec.write_text(yaml.safe_dump(cli_spec(model_dir, configs, args), sort_keys=False))
            search = Path(sys.executable).with_name("search")
            command = [str(search), "run", str(spec), "--storage", str(Path(tmp) / "runs")]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp)
            cli_runs.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"search run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        inprocess_runs.append(inprocess()["fast"][0])
        ratios.append(cli_runs[-1] / statistics.mean(inprocess_runs[-2:]))
    return {
        "cli": True,
        "configs": len(configs),
        "cli_s": round(statistics.median(cli_runs), 2),
        "inprocess_s": round(statistics.median(inprocess_runs), 2),
        "cli_ratio": round(statistics.median(ratios), 3),
        "cli_runs_s": [round(x, 2) for x in cli_runs],
        "inprocess_runs_s": [round(x, 2) for x in inprocess_runs],
        "cli_ratios": [round(x, 3) for x in ratios],
    }


def load_model(args: argparse.Namespace):
    """``(model, tokenizer, model dir)`` of ``--model`` (default: the shipped model); one line and exit 2 if it does
    not load."""
    from search.models import load_pretrained

    path = Path(args.model) if args.model else DEFAULT_MODEL
    if not path.is_dir():
        print(f"--model {path}: no such directory (give a local seq2seq model directory)", file=sys.stderr)
        sys.exit(2)
    try:
        model, tokenizer = load_pretrained(path)
    except Exception as error:  # a missing or unloadable directory
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"--model {path}: not a loadable seq2seq model directory: {reason}", file=sys.stderr)
        sys.exit(2)
    return model, tokenizer, path.resolve()


def line(result: dict, sentences: int, threads: int) -> str:
    """The text line of one result."""
    head = f"{sentences} sentences, {threads} thread(s), model BLEU {result['model_bleu']}"
    if result.get("continuous"):
        return (
            f"continuous: {result['samples']} TPE samples, {head}: decoder steps naive {result['steps_naive']}, "
            f"ours {result['steps_ours']}, {result['step_ratio']}x; naive {result['naive_s']} s, ours "
            f"{result['fast_s']} s, {result['ratio']}x; fallbacks {result['fallbacks']}; scores identical: "
            f"{result['scores_identical']}; best {result['best']}"
        )
    if result.get("cli"):
        return (
            f"CLI: {result['configs']} configs, {head}: search run {result['cli_s']} s, in-process one pass per "
            f"num_beams {result['inprocess_s']} s, cli/in-process {result['cli_ratio']}"
        )
    return (
        f"{result['configs']} configs, {head}: naive {result['naive_s']} s, one pass per num_beams "
        f"{result['fast_s']} s, {result['ratio']}x (CPU time {result['cpu_ratio']}x); limit {result['limit_s']} s, "
        f"fast/limit {result['limit_ratio']} (CPU time {result['limit_cpu_ratio']}); BLEU identical: {result['bleu_identical']} (tokens: "
        f"{result['tokens_identical']}); peak RSS +{result['naive_peak_mib']} / +{result['fast_peak_mib']} MiB; "
        f"best {result['best']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=f"local seq2seq model directory (default: {DEFAULT_MODEL})")
    parser.add_argument("--sentences", type=int, default=300, help="first N dev pairs (default 300)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: robust to other load)")
    parser.add_argument("--grids", default="48,72", help="which grids: 48 and/or 72 (comma-separated; '' for none)")
    parser.add_argument("--samples", type=int, default=40, help="TPE samples of the continuous search (0: skip it)")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI run of the 48-config grid")
    parser.add_argument("--cli-runs", type=int, default=3, help="CLI runs, each between two in-process runs (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per figure")
    parser.add_argument(
        "--smoke-test", action="store_true", help="the shipped model on 8 sentences, small grids, 6 samples"
    )
    args = parser.parse_args(argv)

    import torch

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    from search.corpora import load_pairs
    from search.decoding import source_batches

    hf_logging.set_verbosity_error()
    if args.smoke_test:  # the shipped model (5 MB) on 8 sentences: real BLEU, so "identical" means something
        args.sentences, args.batch_size, args.max_new_tokens, args.samples, args.cli_runs = 8, 4, 24, 6, 1
        SEED_GRID.update(num_beams=[2, 3], length_penalty=[0.6, 1.0])
        CONTINUOUS["num_beams"] = [2, 3]
    model, tokenizer, model_dir = load_model(args)
    model.eval()
    pairs = load_pairs({"corpus": "bible-en-es"}, "dev", limit=args.sentences)
    batches = source_batches(tokenizer, pairs.sources, args.batch_size, 128)
    shared = {"max_new_tokens": args.max_new_tokens, "max_length": None}
    with torch.no_grad():  # warm-up: first calls allocate and load kernels
        model.generate(**batches[0][1], **shared, num_beams=2)
    common = {"model_bleu": model_bleu(model, tokenizer, batches, pairs.references, shared),
              "sentences": len(pairs), "threads": args.threads, "batch_size": args.batch_size}  # fmt: skip

    def report(result: dict) -> None:
        result.update(common)
        print(json.dumps(result) if args.json else line(result, len(pairs), args.threads), flush=True)

    grids = {"48": grid([True, False]), "72": grid([True, False, "never"])}
    names = list(filter(None, args.grids.split(",")))
    union = list({key_of(c): c for name in names for c in grids[name]}.values())
    done = naive_way(model, batches, union, shared)  # once per config, whatever grids it is in
    for name in names:
        result = bench(model, tokenizer, batches, pairs.references, grids[name], shared, done)
        report(result)
        if not (result["bleu_identical"] and result["tokens_identical"]):
            sys.exit(1)
    if args.samples:
        result = bench_continuous(model, tokenizer, batches, pairs.references, shared, args.samples)
        report(result)
        if not result["scores_identical"]:
            sys.exit(1)
    if not args.no_cli:
        report(bench_cli(model_dir, grids["48"], args, lambda: fast_way(model, batches, grids["48"], shared)[1]))


if __name__ == "__main__":
    main()
