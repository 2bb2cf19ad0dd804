"""The decode trainable: shared passes through the board or the cache, exact hypotheses, duplicates named
(search/trainables/decode.py)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import torch

from search.decoding import PassBoard, canonical, planned_configs, source_batches
from search.trainables import decode as decode_module
from search.trainables.decode import generation_args, run
from search.trainables.decode_config import SETTING_DEFAULTS, prepare

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = {"corpus": "bible-en-es"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small random BART with a trained tokenizer, saved as a model directory; EOS made less likely so that
    outputs are several tokens long."""
    from search.corpora import load_pairs
    from search.models import build_model

    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("tok")
    pairs = load_pairs(DATA, "train", limit=300)
    torch.manual_seed(0)
    model, tokenizer = build_model(
        {"arch": "bart", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 400},
        lambda: pairs.sources + pairs.references,
        cache_dir=cache,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        model.final_logits_bias[0, tokenizer.eos_token_id] = 3.0
    path = tmp_path_factory.mktemp("model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def base(model_dir, cache_dir, grid: dict) -> dict:
    settings = {"limit": 12, "batch_size": 5, "max_new_tokens": 12, "cache_dir": str(cache_dir)}
    return {"model": model_dir, "data": DATA, "settings": prepare(settings, grid)}


def test_prepare_and_plan():
    plan = prepare({"batch_size": 4}, {"num_beams": [2, 3], "length_penalty": (0.5, 1.5)})
    assert plan["batch_size"] == 4
    assert plan["decode_plan"] == {
        "grid": {"num_beams": [2, 3]},
        "continuous": ["length_penalty"],
        "ranges": {"length_penalty": [0.5, 1.5]},
    }
    own = {"num_beams": 2, "length_penalty": 0.7}
    assert planned_configs(plan["decode_plan"], own) == [own]  # continuous: no grid to decode ahead
    grid = prepare({}, {"num_beams": [2, 3], "early_stopping": [True, False]})["decode_plan"]
    assert len(planned_configs(grid, own)) == 4


def test_generation_args_normalise_numbers():
    import numpy as np

    args = generation_args(
        {"model": "m", "data": {}, "settings": {}, "num_beams": 4.0, "length_penalty": np.float64(1)}
    )
    assert args == {"num_beams": 4, "length_penalty": 1.0}
    assert type(args["length_penalty"]) is float


def test_trials_share_one_pass_and_equal_generate(model_dir, tmp_path):
    grid = {"num_beams": [1, 3], "length_penalty": [0.5, 2.0], "early_stopping": [True, "never"]}
    config = base(model_dir, tmp_path, grid)
    first = run({**config, "num_beams": 3, "length_penalty": 0.5, "early_stopping": True})
    assert not first["from_cache"] and first["pass_configs"] == 4  # the whole num_beams=3 slice of the grid
    model, tokenizer = decode_module._MODELS[next(iter(decode_module._MODELS))]
    entries = {}
    for lp in (0.5, 2.0):
        for es in (True, "never"):
            metrics = run({**config, "num_beams": 3, "length_penalty": lp, "early_stopping": es})
            assert metrics["from_cache"] and metrics["identical_to"] == ""
            entries[(lp, es)] = metrics
    # Greedy trials: one decode, the duplicates name the canonical config.
    greedy = [run({**config, "num_beams": 1, "length_penalty": lp}) for lp in (0.5, 2.0)]
    assert [g["from_cache"] for g in greedy] == [False, True]
    assert greedy[0]["identical_to"] == greedy[1]["identical_to"] == "num_beams=1"
    assert greedy[0]["bleu"] == greedy[1]["bleu"]
    # Hypotheses from the shared pass equal a generate() per config on the same batches.
    from search.corpora import load_pairs

    pairs = load_pairs(DATA, "dev", limit=12)
    batches = source_batches(tokenizer, pairs.sources, 5, 128)
    lengths = set()
    for (lp, es), metrics in entries.items():
        hyps = [""] * len(pairs)
        for chunk, inputs in batches:
            with torch.no_grad():
                out = model.generate(**inputs, num_beams=3, length_penalty=lp, early_stopping=es, max_new_tokens=12)
            for i, text in zip(chunk, tokenizer.batch_decode(out, skip_special_tokens=True), strict=True):
                hyps[i] = text.strip()
        from search.metrics import corpus_scores

        assert corpus_scores(hyps, pairs.references)["chrf"] == metrics["chrf"]
        lengths.add(metrics["mean_output_len"])
    assert len(lengths) >= 2  # the configs really decode differently


def test_continuous_value_outside_the_plan_is_decoded_alone(model_dir, tmp_path):
    config = base(model_dir, tmp_path, {"num_beams": [3], "length_penalty": (0.0, 2.0)})
    metrics = run({**config, "num_beams": 3, "length_penalty": 1.234})
    assert metrics["pass_configs"] == 1 and not metrics["from_cache"]
    assert run({**config, "num_beams": 3, "length_penalty": 1.234})["from_cache"]


def on_disk(model_dir, tmp_path, disk: str, grid: dict, **args) -> dict:
    """A trial config of a sweep with the pass board "board", on a machine whose disk is ``tmp_path/disk``."""
    config = base(model_dir, tmp_path / disk, grid)
    return {**config, "settings": {**config["settings"], "pass_board": "board"}, **args}


def test_the_board_shares_a_pass_between_machines_and_takes_no_file_lock(model_dir, tmp_path, monkeypatch):
    board = PassBoard()
    monkeypatch.setattr(decode_module, "open_board", lambda name: board if name == "board" else None)
    grid = {"num_beams": [3], "length_penalty": [0.5, 2.0]}
    first = run(on_disk(model_dir, tmp_path, "node1", grid, num_beams=3, length_penalty=0.5))
    assert not first["from_cache"] and first["pass_configs"] == 2
    second = run(on_disk(model_dir, tmp_path, "node2", grid, num_beams=3, length_penalty=2.0))
    assert second["from_cache"] and second["pass_configs"] == 2  # node2's disk was empty: from the board
    assert board.stats() == {"entries": 3, "leases": 1, "expired": 0, "held": 0}  # 2 configs and the record
    assert len(list((tmp_path / "node1" / "decode").glob("*/*.json"))) == 2
    assert len(list((tmp_path / "node2" / "decode").glob("*/*.json"))) == 1  # kept there for later runs
    assert not list(tmp_path.glob("node*/decode/*.lock"))


def test_a_later_run_reads_its_machines_disk_first(model_dir, tmp_path, monkeypatch):
    smaller = {"num_beams": [3], "length_penalty": [2.0]}  # an earlier run on this machine, without a board
    earlier = run({**base(model_dir, tmp_path / "node", smaller), "num_beams": 3, "length_penalty": 2.0})
    assert not earlier["from_cache"]
    board = PassBoard()
    monkeypatch.setattr(decode_module, "open_board", lambda name: board)
    grid = {"num_beams": [3], "length_penalty": [0.5, 2.0]}
    again = run(on_disk(model_dir, tmp_path, "node", grid, num_beams=3, length_penalty=2.0))
    assert again["from_cache"] and board.stats()["leases"] == 0
    # The earlier pass ran until length_penalty=2.0 stopped; its record covers 0.5 (a smaller one stops no later).
    other = run(on_disk(model_dir, tmp_path, "node", grid, num_beams=3, length_penalty=0.5))
    assert other["from_cache"] and other["replayed"] and board.stats()["leases"] == 0
    assert 0 < other["decoder_steps"] <= again["decoder_steps"] and other["est_seconds"] > 0  # its own cost
    elsewhere = run(on_disk(model_dir, tmp_path, "elsewhere", grid, num_beams=3, length_penalty=2.0))
    assert not elsewhere["from_cache"] and board.stats() == {"entries": 3, "leases": 1, "expired": 0, "held": 0}


def test_canonical_duplicates(model_dir):
    model, _ = decode_module.load(model_dir, {**SETTING_DEFAULTS}, DATA)
    shared = {"max_new_tokens": 5}
    never = canonical(model, {"num_beams": 3, "length_penalty": -1.0, "early_stopping": "never"}, shared)
    false = canonical(model, {"num_beams": 3, "length_penalty": -1.0, "early_stopping": False}, shared)
    assert never == false
    positive = canonical(model, {"num_beams": 3, "length_penalty": 1.0, "early_stopping": "never"}, shared)
    assert positive[1]["early_stopping"] == "never"


@pytest.mark.ray
def test_tune_grid_reports_shared_passes(ray_session, model_dir, tmp_path):
    """Without a pass board (a Tuner the runner did not build, so no ``start``): the file lock shares the passes."""
    from ray import tune

    grid = {"num_beams": [2, 3], "length_penalty": [0.6, 1.0]}
    config = base(model_dir, tmp_path / "cache", grid)
    space = {**config, **{k: tune.grid_search(v) for k, v in grid.items()}}
    tuner = tune.Tuner(
        tune.with_resources(decode_module.decode, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=True),
        # sync_artifacts: the trial's working directory (hypotheses.txt) is copied to its trial directory.
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "runs"), verbose=0, sync_config=tune.SyncConfig(sync_artifacts=True)
        ),
    )
    results = tuner.fit()
    assert len(results) == 4 and not results.errors
    frames = [r.metrics for r in results]
    assert all(m["pass_configs"] == 2 for m in frames)
    assert sum(not m["from_cache"] for m in frames) == 2  # one pass per num_beams, whoever ran first
    lines = [(Path(r.path) / "hypotheses.txt").read_text().splitlines() for r in results]
    assert all(len(hyps) == 12 for hyps in lines)  # left for the ranking's paired bootstrap


def test_order_grid_interleaves_passes_longest_first():
    """Consecutive trials of the seed grid lease different beam passes (most beams first); every config once."""
    from search.spec import validate
    from search.trainables.decode_config import order_grid
    from search.tune.space import param_space

    grid = [
        {"num_beams": nb, "length_penalty": lp, "early_stopping": es}
        for nb in (5, 8, 11, 15) for lp in (0.6, 0.7, 0.8, 0.9, 1.0, 1.1) for es in (True, False)
    ]  # fmt: skip
    ordered = order_grid(grid)
    assert sorted(map(repr, ordered)) == sorted(map(repr, grid))
    assert [c["num_beams"] for c in ordered[:8]] == [15, 11, 8, 5] * 2
    assert all(a["num_beams"] != b["num_beams"] for a, b in itertools.pairwise(ordered))
    # The tune layer hands the hook the grid's combinations and keeps its order, without Ray running.
    spec = validate({"method": "grid", "metric": {"name": "bleu", "goal": "maximize"},
                     "parameters": {"num_beams": {"values": [4, 8]}, "length_penalty": {"values": [0.6, 1.0]}}},
                    "s.yaml")  # fmt: skip
    space = param_space(spec.parameters, "grid", order_grid)
    assert [c["num_beams"] for c in space["_grid"]["grid_search"]] == [8, 4, 8, 4]


def test_planning_a_decode_sweep_imports_neither_torch_nor_transformers(tmp_path):
    """The driver plans a decode sweep (hooks, checks but the model's, the trial function) without the ~3 s of torch
    imports; the trial function pickles small and imports the trainable where it first runs."""
    import subprocess
    import sys

    spec = Path(__file__).resolve().parents[1] / "experiments" / "decode_seed_grid.yaml"
    script = f"""
import sys
from search.spec import load_spec
from search.tune.plan import plan
p = plan(load_spec({str(spec)!r}), storage={str(tmp_path)!r}, defer=True)
assert p.param_space["settings"]["decode_plan"]["grid"], p.param_space["settings"]
assert len(p.pending) == 1  # the model's check, left to run while Ray starts
import ray.cloudpickle
assert len(ray.cloudpickle.dumps(p.trial_fn)) < 10_000  # by name: no module's code shipped
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    assert not list(tmp_path.iterdir())  # nothing written
