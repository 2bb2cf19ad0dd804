"""The one-pass replay equals generate() token for token and score for score (search/beam.py)."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

from search.decoding import beam
from search.decoding.beam import Decoded, decode_configs, decoding_kind, helpers_available

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB, EOS = 40, 2
# (init std, EOS logit bias) per architecture: chosen so that length_penalty and early_stopping change the outputs
# of these random models (checked below by counting distinct outputs).
MODELS = {"bart": (0.3, 2.0), "marian": (0.2, 3.0), "t5": (1.0, 4.0)}
GRID = [
    {"num_beams": nb, "length_penalty": lp, "early_stopping": es}
    for nb in (2, 4, 7)
    for lp in (-1.0, 0.0, 0.6, 1.0, 2.0)
    for es in (True, False, "never")
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(arch: str):
    """A random 1+1-layer seq2seq model whose EOS logit is raised by a fixed bias."""
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        MarianConfig,
        MarianMTModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    std, bias = MODELS[arch]
    torch.manual_seed(0)
    common = dict(
        vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=EOS, forced_eos_token_id=None, init_std=std,
    )  # fmt: skip
    if arch == "bart":
        model = BartForConditionalGeneration(BartConfig(**common, bos_token_id=1, decoder_start_token_id=EOS))
    elif arch == "marian":
        model = MarianMTModel(MarianConfig(**common, decoder_vocab_size=VOCAB, decoder_start_token_id=0))
    else:
        config = T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
            pad_token_id=0, eos_token_id=EOS, decoder_start_token_id=0, initializer_factor=std,
        )  # fmt: skip
        model = T5ForConditionalGeneration(config)
    model.eval()

    def raise_eos(module, inputs, logits):
        logits[..., EOS] += bias
        return logits

    model.get_output_embeddings().register_forward_hook(raise_eos)
    return model


def batch() -> dict:
    """Six padded source sentences (padding must be handled identically by the pass and generate())."""
    ids = torch.randint(3, VOCAB, (6, 10), generator=torch.Generator().manual_seed(5))
    ids[1, 6:] = 0
    ids[4, 3:] = 0
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def reference(model, inputs: dict, shared: dict, config: dict):
    with torch.no_grad():
        return model.generate(**inputs, **{**shared, **config}, output_scores=True, return_dict_in_generate=True)


def check_equal(model, inputs: dict, shared: dict, configs: list[dict]) -> set:
    """Assert the fast path equals generate() for every config; return the distinct outputs seen."""
    distinct = set()
    for config, fast in zip(configs, decode_configs(model, inputs, configs, shared), strict=True):
        ref = reference(model, inputs, shared, config)
        assert torch.equal(fast.sequences, ref.sequences), config
        assert fast.own_steps == len(ref.scores), config  # the decoder steps generate() ran for it alone
        if config.get("num_beams", 1) > 1:
            assert torch.equal(fast.sequences_scores, ref.sequences_scores), config
        distinct.add((config.get("num_beams"), tuple(map(tuple, ref.sequences.tolist()))))
    return distinct


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_grid_equals_generate(arch):
    model = tiny_model(arch)
    distinct = check_equal(model, batch(), {"max_new_tokens": 20}, GRID)
    # The test must not pass vacuously: length_penalty / early_stopping change the output for every num_beams.
    for nb in (2, 4, 7):
        assert len({out for n, out in distinct if n == nb}) >= 2, (arch, nb)
    assert len(distinct) >= 12, (arch, len(distinct))


@pytest.mark.parametrize("arch", ["bart", "t5"])
def test_shared_processors_and_return_sequences(arch):
    model = tiny_model(arch)
    shared = {"max_new_tokens": 16, "min_length": 6, "no_repeat_ngram_size": 2}
    configs = [
        {"num_beams": nb, "length_penalty": lp, "early_stopping": es, "num_return_sequences": nrs}
        for nb in (3, 5)
        for lp in (-1.0, 0.6, 2.0)
        for es in (True, False, "never")
        for nrs in sorted({1, 2, nb})
    ]
    distinct = check_equal(model, batch(), shared, configs)
    assert len(distinct) >= 10, len(distinct)


def test_greedy_and_mixed_passes_in_one_call():
    model = tiny_model("bart")
    configs = [
        {"num_beams": 1, "length_penalty": 0.6},
        {"num_beams": 1, "early_stopping": True},
        {"num_beams": 4, "length_penalty": 1.0, "max_new_tokens": 9},  # its own pass: another max_new_tokens
        {"num_beams": 4, "length_penalty": 1.0},
        {"num_beams": 4, "length_penalty": 1.0, "early_stopping": True},
    ]
    check_equal(model, batch(), {"max_new_tokens": 20}, configs)
    assert decoding_kind(model, configs[0], {})[0] == decoding_kind(model, configs[1], {})[0] == "greedy"
    assert decoding_kind(model, configs[2], {})[1] != decoding_kind(model, configs[3], {})[1]


def test_outside_the_fast_path_runs_generate():
    model = tiny_model("bart")
    assert decoding_kind(model, {"num_beams": 4, "do_sample": True}, {}) is None
    assert decoding_kind(model, {"num_beams": 4, "top_k": 5}, {}) is None  # unknown to the replay: never guessed
    assert decoding_kind(model, {"num_beams": 2, "num_return_sequences": 3}, {}) is None  # generate() raises for this
    inputs = batch()
    torch.manual_seed(3)
    (fast,) = decode_configs(model, inputs, [{"num_beams": 2, "do_sample": True}], {"max_new_tokens": 8})
    torch.manual_seed(3)
    with torch.no_grad():
        ref = model.generate(**inputs, num_beams=2, do_sample=True, max_new_tokens=8)
    assert isinstance(fast, Decoded) and torch.equal(fast.sequences, ref)


def test_hooks_are_removed_even_after_an_error():
    model = tiny_model("t5")
    assert helpers_available(model)
    with pytest.raises(ValueError):  # generate() rejects the unknown model argument inside the hooked call
        decode_configs(
            model, {"input_ids": batch()["input_ids"], "bogus": 1}, [{"num_beams": 3}], {"max_new_tokens": 4}
        )
    assert not any(name in vars(model) for name in ("_update_finished_beams", "_check_early_stop_heuristic"))


# ---------------------------------------------------------------- devices and precision

FACTORIES = frozenset({torch.full, torch.tensor, torch.arange, torch.zeros, torch.ones, torch.empty, torch.as_tensor})


class MetaByDefault(TorchFunctionMode):
    """Tensors that code in ``path`` creates without ``device=`` land on the ``meta`` device (no data), as if it were
    the default device for that file only; transformers' own code is left alone (it creates some tensors on the
    CPU and moves them, which a global ``torch.set_default_device("meta")`` would break)."""

    def __init__(self, path: str):
        super().__init__()
        self.path, self.redirected = path, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in FACTORIES and kwargs.get("device") is None and sys._getframe(1).f_code.co_filename == self.path:
            kwargs["device"], self.redirected = "meta", self.redirected + 1
        return func(*args, **kwargs)


def test_the_replay_creates_its_tensors_on_the_inputs_device():
    # The harness catches a factory call without device= in beam.py (here: code compiled under beam.py's name).
    mode = MetaByDefault(beam.__file__)
    with mode:
        exec(compile("made = torch.full((2,), -1)", beam.__file__, "exec"), {"torch": torch}, scope := {})
    assert scope["made"].is_meta and mode.redirected == 1
    # So a replay that made one tensor off the inputs' device would fail here (meta and cpu tensors do not mix).
    model, inputs = tiny_model("bart"), batch()
    configs = [
        {"num_beams": 3, "length_penalty": lp, "early_stopping": es} for lp in (0.6, 2.0) for es in (True, "never")
    ]
    mode = MetaByDefault(beam.__file__)
    with mode:
        outs = decode_configs(model, inputs, configs, {"max_new_tokens": 12})
    assert mode.redirected == 0
    for out, config in zip(outs, configs, strict=True):
        assert out.sequences.device == out.sequences_scores.device == inputs["input_ids"].device
        assert torch.equal(out.sequences, reference(model, inputs, {"max_new_tokens": 12}, config).sequences)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_replay_equals_generate_under_autocast(dtype):
    model, shared = tiny_model("bart"), {"max_new_tokens": 20}
    configs = [c for c in GRID if c["num_beams"] in (2, 4)]
    with torch.autocast("cpu", dtype=dtype):
        distinct = check_equal(model, batch(), shared, configs)
        half = reference(model, batch(), shared, configs[0]).sequences_scores
    assert len(distinct) >= 6, len(distinct)
    assert not torch.equal(half, reference(model, batch(), shared, configs[0]).sequences_scores)  # autocast acted


def test_decoding_kind_sees_a_change_to_the_models_generation_config():
    model = tiny_model("bart")
    before = decoding_kind(model, {"num_beams": 4}, {})
    before[2]["length_penalty"] = 9.0  # what a caller does to an answer does not reach the next one
    assert decoding_kind(model, {"num_beams": 4}, {}) == ("beam", before[1], {**before[2], "length_penalty": 1.0})
    model.generation_config.length_penalty, model.generation_config.early_stopping = 2.0, True
    after = decoding_kind(model, {"num_beams": 4}, {})
    assert after[2]["length_penalty"] == 2.0 and after[2]["early_stopping"] is True
