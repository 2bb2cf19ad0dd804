"""Devices, precision and gradient accumulation of the built-in trainables (search/trainables/device.py).

No GPU here: the device choice is tested by making torch believe in one (no tensor moves), the device paths of the
replay in test_beam.py, and bf16/fp16 on the CPU, where torch 2.13 autocasts both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from search.errors import SpecError
from search.trainables import decode as decode_module
from search.trainables import decode_config
from search.trainables import finetune as ft
from search.trainables.checkpoints import load_training_state
from search.trainables.device import Compute, resolve_device, trial_gpus

SOURCES = ["the cat sleeps", "the dog eats", "a bird sings", "my house is big", "we walk home", "you read a book"]
TARGETS = [
    "el gato duerme",
    "el perro come",
    "un pájaro canta",
    "mi casa es grande",
    "caminamos a casa",
    "lees un libro",
]
PAIRS = SimpleNamespace(sources=SOURCES, references=TARGETS, name="toy")
MODEL = {"arch": "bart", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 300}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _own_models(monkeypatch):
    """The decode trainable's per-process models stay this module's (test_decode reads the ones it loaded)."""
    monkeypatch.setattr(decode_module, "_MODELS", {})


def config(tmp_path: Path, **settings) -> ft.FinetuneConfig:
    base = {"max_steps": 6, "eval_every": 3, "eval_size": 6, "max_new_tokens": 8, "cache_dir": str(tmp_path / "c")}
    return ft.resolve_config(
        {"model": MODEL, "learning_rate": 3e-3, "warmup_steps": 2, "batch_tokens": 40, "settings": {**base, **settings}}
    )


def train(cfg: ft.FinetuneConfig, checkpoints: Path | None = None) -> list[dict]:
    reports = []

    def report(metrics, save):
        reports.append(metrics)
        if checkpoints is not None:
            save(checkpoints / str(metrics["step"]))

    ft.train(cfg, PAIRS, PAIRS, report, None, "t1")
    return reports


# ---------------------------------------------------------------- which device


@pytest.fixture
def gpu_machine(monkeypatch):
    """torch believes a CUDA GPU exists; nothing is moved to it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_cpu_and_auto_without_a_gpu():
    assert not torch.cuda.is_available()  # this machine; the next tests pretend otherwise
    assert resolve_device("auto", "s.yaml", None) == torch.device("cpu")
    assert resolve_device("cpu", "s.yaml", 1.0) == torch.device("cpu")


def test_cuda_without_a_gpu_is_a_one_line_spec_error():
    with pytest.raises(SpecError) as err:
        resolve_device("cuda", "s.yaml", None)
    assert err.value.key == "settings.device"
    assert "no CUDA GPU" in str(err.value) and "use device: auto or cpu" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(SpecError, match="settings.device: is cuda"):
        ft.init_state(config(Path("/nonexistent"), device="cuda"), SOURCES)  # before any model is built


@pytest.mark.parametrize(
    ("requested", "gpus", "expected"),
    [
        ("auto", None, "cuda"),  # outside Ray: torch sees a GPU
        ("auto", 1.0, "cuda"),  # Ray gave the trial a GPU
        ("auto", 0.5, "cuda"),  # ...or a share of one
        ("auto", 0.0, "cpu"),  # Ray gave it none (resources.gpu: 0): never take a GPU another trial holds
        ("cpu", 1.0, "cpu"),
        ("cuda", None, "cuda"),
    ],
)
def test_auto_takes_the_gpu_the_trial_was_given(gpu_machine, requested, gpus, expected):
    assert resolve_device(requested, "s.yaml", gpus) == torch.device(expected)


def test_cuda_in_a_trial_ray_gave_no_gpu(gpu_machine):
    with pytest.raises(SpecError) as err:
        Compute.from_settings({"device": "cuda", "precision": "fp32", "spec_file": "s.yaml"}, gpus=0.0)
    assert str(err.value).startswith(
        "s.yaml: settings.device: is cuda but Ray gave this trial no GPU; set resources.gpu"
    )


def test_trial_gpus_is_none_outside_a_ray_worker():
    assert trial_gpus() is None


@pytest.mark.ray
def test_trial_gpus_inside_ray(ray_session):
    assert trial_gpus() is None  # the driver has no assigned resources
    assert ray_session.get(ray_session.remote(num_cpus=1, num_gpus=0)(trial_gpus).remote()) == 0.0


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        ({"device": "gpu"}, "settings.device", "must be one of auto, cpu, cuda, got 'gpu'"),
        ({"precision": "fp8"}, "settings.precision", "must be one of fp32, bf16, fp16, got 'fp8'"),
        ({"precision": "bf16", "device": "tpu"}, "settings.device", "must be one of auto, cpu, cuda, got 'tpu'"),
    ],
)
def test_both_trainables_check_device_and_precision(tmp_path, settings, key, words):
    with pytest.raises(SpecError) as err:
        config(tmp_path, **settings)
    assert (err.value.key, err.value.message) == (key, words)
    with pytest.raises(SpecError) as err:
        decode_config.resolve_settings({"model": "m", "data": {}, "settings": settings}, "s.yaml")
    assert (err.value.key, err.value.message) == (key, words)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_grad_accum_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(SpecError) as err:
        config(tmp_path, grad_accum=bad)
    assert err.value.key == "settings.grad_accum" and "must be an integer > 0" in err.value.message


# ---------------------------------------------------------------- precision


def test_bf16_finetune_on_the_cpu(tmp_path):
    fp32 = train(config(tmp_path / "a"))
    bf16 = train(config(tmp_path / "b", precision="bf16"), checkpoints=tmp_path / "ckpt")
    assert [r["step"] for r in bf16] == [3, 6]
    for report in bf16:
        assert (report["precision"], report["device"]) == ("bf16", "cpu")
        assert all(math.isfinite(report[k]) for k in ("train_loss", "eval_loss", "bleu", "chrf"))
    assert load_training_state(tmp_path / "ckpt" / "6")["precision"] == "bf16"
    # autocast really ran: same seed, same batches, losses close but not equal to fp32's
    assert fp32[0]["precision"] == "fp32"
    assert bf16[0]["train_loss"] != fp32[0]["train_loss"]
    assert bf16[0]["train_loss"] == pytest.approx(fp32[0]["train_loss"], rel=0.05)


def test_fp16_finetune_runs_on_the_cpu_with_a_scaler(tmp_path):
    reports = train(config(tmp_path, precision="fp16"), checkpoints=tmp_path / "ckpt")
    assert reports[-1]["precision"] == "fp16" and math.isfinite(reports[-1]["eval_loss"])
    scaler = load_training_state(tmp_path / "ckpt" / "6")["scaler"]
    assert scaler["scale"] > 0 and scaler["_growth_tracker"] > 0  # the scaler stepped (fp32 saves {})
    assert load_training_state(tmp_path / "ckpt" / "3")["scaler"] != scaler


def test_fp16_scaler_state_survives_save_and_restore(tmp_path):
    cfg = config(tmp_path, precision="fp16")
    state = ft.init_state(cfg, SOURCES + TARGETS)
    state.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)  # grows every 2 clean steps
    src, tgt = ft.encode(state.tokenizer, SOURCES, TARGETS, 64)
    batch = ft.collate(state.model, state.tokenizer.pad_token_id, src[:3], tgt[:3])
    for _ in range(5):
        ft.train_step(state, cfg, [batch])
    saved = state.scaler.state_dict()
    assert saved["scale"] != 1024.0 and saved["growth_interval"] == 2  # not what a fresh scaler holds
    ft.save_state(state, cfg, tmp_path / "ckpt", "t1")
    for trial_id in ("t1", "pbt-clone"):  # resumed, and exploited by another trial: both keep the scale
        restored = ft.restore(cfg, tmp_path / "ckpt", trial_id)
        assert restored.scaler.is_enabled() and restored.scaler.state_dict() == saved


def test_a_checkpoint_written_on_a_gpu_restores_on_the_cpu(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    state = ft.init_state(cfg, SOURCES + TARGETS)
    batch = ft.collate(state.model, state.tokenizer.pad_token_id, *ft.encode(state.tokenizer, SOURCES, TARGETS, 64))
    ft.train_step(state, cfg, [batch])
    with monkeypatch.context() as patch:  # the state file says its tensors were on cuda:0, as a GPU trial's are
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        ft.save_state(state, cfg, tmp_path / "ckpt", "t1")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "ckpt" / "training_state.pt", weights_only=False)  # not loadable as it is here
    restored = ft.restore(cfg, tmp_path / "ckpt", "t1")
    moments = restored.optimizer.state_dict()["state"]
    assert moments and all(m["exp_avg"].device.type == "cpu" for m in moments.values())
    assert restored.step == 1


# ---------------------------------------------------------------- gradient accumulation


def one_step(cfg: ft.FinetuneConfig, index_sets: list[list[int]]) -> tuple[dict, dict, list[int]]:
    """``(gradients, parameters, target tokens per micro-batch)`` after one ``train_step`` from the seeded initial
    model on the micro-batches of the pairs at ``index_sets``."""
    state = ft.init_state(cfg, SOURCES + TARGETS)
    src, tgt = ft.encode(state.tokenizer, SOURCES, TARGETS, 64)
    pad = state.tokenizer.pad_token_id
    micro = [ft.collate(state.model, pad, [src[i] for i in ix], [tgt[i] for i in ix]) for ix in index_sets]
    ft.train_step(state, cfg, micro)
    named = dict(state.model.named_parameters())
    grads = {k: p.grad.clone() for k, p in named.items() if p.grad is not None}
    return grads, {k: p.detach().clone() for k, p in named.items()}, [int((b["labels"] != -100).sum()) for b in micro]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=atol) for k in a)


@pytest.mark.parametrize(
    ("first", "second", "equal_tokens"),
    [
        ([0, 4], [1, 5], True),  # 21 target tokens each (the case the settings promise)
        ([0, 1], [2, 3, 5], False),  # 20 and 37: per-token normalisation over the accumulated batch covers it too
    ],
)
def test_two_micro_batches_equal_one_step_on_their_union(tmp_path, first, second, equal_tokens):
    # no dropout; no clipping, so that the gradients themselves are compared (Adam's first step hides their scale)
    cfg = config(tmp_path, grad_accum=2, max_steps=100)
    cfg = ft.FinetuneConfig(**{**cfg.__dict__, "dropout": 0.0, "max_grad_norm": 0.0})
    grads, params, tokens = one_step(cfg, [first, second])
    union_grads, union_params, _ = one_step(cfg, [first + second])
    assert (tokens[0] == tokens[1]) is equal_tokens
    # gradients differ by ~4e-8 here (padding, summation order); Adam's first step (lr 1.5e-3, ~lr * sign(grad))
    # turns that into ~2e-7 on the parameters whose gradient is near 0
    assert same(grads, union_grads, atol=1e-7) and same(params, union_params, atol=1e-6)
    first_grads, first_params, _ = one_step(cfg, [first])
    assert not same(first_grads, union_grads, atol=1e-7) and not same(first_params, union_params, atol=1e-6)


def test_grad_accum_counts_optimizer_steps_and_consumes_micro_batches(tmp_path):
    reports = train(config(tmp_path, grad_accum=3), checkpoints=tmp_path / "by3")
    assert [r["step"] for r in reports] == [3, 6]  # max_steps and eval_every count optimizer steps
    train(config(tmp_path, max_steps=18, eval_every=18), checkpoints=tmp_path / "by1")
    accumulated, plain = load_training_state(tmp_path / "by3" / "6"), load_training_state(tmp_path / "by1" / "18")
    assert plain["epoch"] >= 2  # the micro-batches ran over epoch ends
    # 6 steps of 3 micro-batches stop where 18 steps of 1 do: checkpoints resume at the right micro-batch
    assert (accumulated["epoch"], accumulated["batch_in_epoch"]) == (plain["epoch"], plain["batch_in_epoch"])
    assert accumulated["optimizer"]["state"][0]["step"] == 6


# ---------------------------------------------------------------- decoding


def test_bf16_decode_on_the_cpu(tiny_model, tmp_path):
    settings = {"limit": 6, "batch_size": 3, "max_new_tokens": 6, "max_source_length": 20, "cache_dir": str(tmp_path)}
    base = {"model": str(tiny_model), "data": {"corpus": "bible-en-es"}, "num_beams": 3, "length_penalty": 1.0}
    fp32 = decode_module.run({**base, "settings": {**settings, "device": "auto"}})
    assert not fp32["from_cache"]
    assert decode_module.run({**base, "settings": {**settings, "device": "cpu"}})["from_cache"]  # device: same key
    bf16 = decode_module.run({**base, "settings": {**settings, "precision": "bf16"}})
    assert not bf16["from_cache"]  # precision is part of the key
    assert math.isfinite(bf16["bleu"]) and math.isfinite(bf16["chrf"])
    entries = [json.loads(path.read_text()) for path in (tmp_path / "decode").glob("*/*.json")]
    assert sorted((e["precision"], e["device"]) for e in entries) == [("bf16", "cpu"), ("fp32", "cpu")]


def test_decode_pass_runs_generate_under_autocast(tiny_model):
    from search.decoding import source_batches

    settings = {**decode_config.SETTING_DEFAULTS, "device": "cpu"}
    model, tokenizer = decode_module.load(str(tiny_model), settings, {})
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    try:
        batches = source_batches(tokenizer, ["the cat sat", "a dog ran on the mat"], 2, 32)
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            seen.clear()
            (entry,), _ = decode_module.decode_pass(
                model, tokenizer, batches, [{"num_beams": 2}], {"max_new_tokens": 4}, 0, precision
            )
            assert set(seen) == {dtype} and entry["precision"] == precision
    finally:
        handle.remove()
