"""Time the naive decoding sweep (one ``generate()`` per config, as run_eval_search.py did) against one exact beam
pass per ``num_beams`` (``search.beam.decode_configs``), on the same model, dev batches and threads.

Grids: the 48-config seed grid (num_beams 5,8,11,15 x length_penalty 0.6..1.1 x early_stopping true,false) and the
72-config grid that adds early_stopping "never". For every config the corpus BLEU of both ways must be identical.

    python experiments/bench_decode.py                  # trains a small model once (runs/models/bible-en-es-tiny)
    python experiments/bench_decode.py --model DIR --sentences 300 --threads 1 --json
    python experiments/bench_decode.py --smoke-test     # tiny random model, 8 sentences, small grid (< 1 min)

Wall times need an otherwise idle machine; ``cpu_ratio`` (process CPU time, 1 thread) is robust to other load.
Peak memory is the peak resident-set growth of the process during each way (sampled every 5 ms), in MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = ROOT / "runs" / "models" / "bible-en-es-tiny"
SEED_GRID = {"num_beams": [5, 8, 11, 15], "length_penalty": [0.6, 0.7, 0.8, 0.9, 1.0, 1.1]}
# The small model of DESIGN.md (2+2 layers, d_model 128, 2k BPE); ~4 minutes of training reaches BLEU ~2-4.
TRAIN_MODEL = {"arch": "bart", "d_model": 128, "layers": 2, "heads": 4, "ffn": 512, "vocab_size": 2000}


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


def train_model(target: Path, steps: int) -> None:
    """Fine-tune the small model from scratch with the project's ``finetune`` trainable and keep its last model."""
    from search.trainables.checkpoints import model_dir
    from search.trainables.finetune import finetune

    with tempfile.TemporaryDirectory() as out:
        settings = {"max_steps": steps, "eval_every": steps, "eval_size": 16, "output_dir": out}
        finetune({"model": TRAIN_MODEL, "data": {"corpus": "bible-en-es"}, "settings": settings})
        last = sorted(Path(out).glob("checkpoint_*"))[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_dir(last), target)


def texts(tokenizer, batches, outputs) -> list[str]:
    """Top hypothesis of each input, in dev-set order."""
    hyps = [""] * sum(len(chunk) for chunk, _ in batches)
    for (chunk, _), out in zip(batches, outputs, strict=True):
        for i, text in zip(chunk, tokenizer.batch_decode(out, skip_special_tokens=True), strict=True):
            hyps[i] = text.strip()
    return hyps


def bench(model, tokenizer, batches, references, configs: list[dict], shared: dict) -> dict:
    """Both ways on one grid: seconds, ratio, identical BLEU per config, peak memory."""
    import torch

    from search.decoding import decode_configs
    from search.metrics import corpus_scores

    with PeakRSS() as naive_mem, torch.no_grad():
        start, cpu = time.perf_counter(), time.process_time()
        naive = [[model.generate(**inputs, **shared, **c) for _, inputs in batches] for c in configs]
        naive_s, naive_cpu = time.perf_counter() - start, time.process_time() - cpu
    by_beams: dict[int, list[int]] = {}
    for i, c in enumerate(configs):
        by_beams.setdefault(c["num_beams"], []).append(i)
    fast: list[list] = [[] for _ in configs]
    with PeakRSS() as fast_mem:
        start, cpu = time.perf_counter(), time.process_time()
        for members in by_beams.values():  # one pass per num_beams, batch by batch
            for _, inputs in batches:
                outs = decode_configs(model, inputs, [configs[i] for i in members], shared)
                for i, out in zip(members, outs, strict=True):
                    fast[i].append(out.sequences)
        fast_s, fast_cpu = time.perf_counter() - start, time.process_time() - cpu
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
        "ratio": round(naive_s / fast_s, 2),
        # CPU seconds of this process: with 1 thread, robust to other load on the machine (wall time is not).
        "naive_cpu_s": round(naive_cpu, 2),
        "fast_cpu_s": round(fast_cpu, 2),
        "cpu_ratio": round(naive_cpu / fast_cpu, 2),
        "bleu_identical": bleu_naive == bleu_fast,
        "tokens_identical": tokens_identical,
        "naive_peak_mib": round(naive_mem.mib, 1),
        "fast_peak_mib": round(fast_mem.mib, 1),
        "best": {**configs[best], "bleu": round(bleu_fast[best], 2)},
        "distinct_bleu": len(set(bleu_fast)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=f"local seq2seq model directory (default: {DEFAULT_MODEL}, trained if missing)")
    parser.add_argument("--sentences", type=int, default=300, help="first N dev pairs (default 300)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: robust to other load)")
    parser.add_argument("--train-steps", type=int, default=1500, help="steps when the default model is trained")
    parser.add_argument("--grids", default="48,72", help="which grids: 48 and/or 72 (comma-separated)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per grid")
    parser.add_argument("--smoke-test", action="store_true", help="tiny random model, 8 sentences, small grid")
    args = parser.parse_args(argv)

    import torch

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    from search.corpora import load_pairs
    from search.decoding import source_batches
    from search.models import build_model, load_pretrained

    hf_logging.set_verbosity_error()
    data = {"corpus": "bible-en-es"}
    if args.smoke_test:
        torch.manual_seed(0)
        train = load_pairs(data, "train", limit=300)
        cache = ROOT / "runs" / ".cache"
        sizes = {"arch": "bart", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 400}
        model, tokenizer = build_model(sizes, lambda: train.sources + train.references, cache_dir=cache)
        args.sentences, args.batch_size, args.max_new_tokens = 8, 4, 8
        SEED_GRID.update(num_beams=[2, 3], length_penalty=[0.6, 1.0])
    else:
        path = Path(args.model) if args.model else DEFAULT_MODEL
        if not path.is_dir():
            if args.model:
                sys.exit(f"--model {args.model}: no such directory")
            print(f"training a small model into {path} ({args.train_steps} steps, once)", file=sys.stderr)
            train_model(path, args.train_steps)
        model, tokenizer = load_pretrained(path)
    model.eval()
    pairs = load_pairs(data, "dev", limit=args.sentences)
    batches = source_batches(tokenizer, pairs.sources, args.batch_size, 128)
    shared = {"max_new_tokens": args.max_new_tokens, "max_length": None}
    with torch.no_grad():  # warm-up: first calls allocate and load kernels
        model.generate(**batches[0][1], **shared, num_beams=2)
    grids = {"48": grid([True, False]), "72": grid([True, False, "never"])}
    for name in args.grids.split(","):
        result = bench(model, tokenizer, batches, pairs.references, grids[name], shared)
        result.update(sentences=len(pairs), threads=args.threads, batch_size=args.batch_size)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(
                f"{result['configs']} configs, {len(pairs)} sentences, {args.threads} thread(s): "
                f"naive {result['naive_s']} s, one pass per num_beams {result['fast_s']} s, "
                f"{result['ratio']}x (CPU time {result['cpu_ratio']}x); BLEU identical: {result['bleu_identical']} (tokens: {result['tokens_identical']}); "
                f"peak RSS +{result['naive_peak_mib']} / +{result['fast_peak_mib']} MiB; best {result['best']}",
                flush=True,
            )
        if not (result["bleu_identical"] and result["tokens_identical"]):
            sys.exit(1)


if __name__ == "__main__":
    main()
