"""A recorded beam pass replays any (length_penalty, early_stopping, num_return_sequences) without the model, equal
to generate() token for token and score for score, and says which configs it does not cover
(search/decoding/records.py, beam.PassRecords)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_beam import batch, reference, tiny_model

from search.decoding.beam import NotCovered, PassRecords, decode_configs, decoding_kind, run_pass
from search.decoding.records import BatchRecord, replay

SHARED = {"max_new_tokens": 20}
EARLY_STOPPING = st.sampled_from([True, False, "never"])
# The upper end of the length_penalty range a horizon covers (the bound of search/decoding/configs.horizon), per
# architecture: high enough that the range changes outputs, low enough that its pass stops before max_new_tokens
# (the tiny BART runs to the end for every config on this batch, so only the to-the-end test covers it).
HIGH = {"marian": 0.8, "t5": 0.3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def record_of(model, inputs: dict, nb: int, configs: list[dict], horizon=(), to_end=False) -> BatchRecord:
    """The record of one live pass over ``inputs`` for ``configs`` (generate() arguments)."""
    replays = [decoding_kind(model, {"num_beams": nb, **c}, SHARED)[2] for c in configs]
    extra = [decoding_kind(model, {"num_beams": nb, **c}, SHARED)[2] for c in horizon]
    args = {**SHARED, "max_length": None}
    with torch.no_grad():
        return run_pass(model, inputs, args, nb, replays, extra, to_end)[1]


def assert_replay_equals_generate(model, inputs, record: BatchRecord, nb: int, config: dict) -> None:
    (out,) = replay(record, [decoding_kind(model, {"num_beams": nb, **config}, SHARED)[2]])
    assert out is not None, config
    ref = reference(model, inputs, SHARED, {"num_beams": nb, **config})
    assert torch.equal(out.sequences, ref.sequences), config
    assert torch.equal(out.sequences_scores, ref.sequences_scores), config


# Records are made once per architecture (a live pass each); hypothesis then draws configs to replay.
_RECORDS: dict[tuple[str, str], tuple] = {}


def records(arch: str, kind: str):
    if (arch, kind) not in _RECORDS:
        model, inputs = tiny_model(arch), batch()
        own = [{"length_penalty": -1.0, "early_stopping": True}]  # a config that stops early
        if kind == "to_end":
            record = record_of(model, inputs, 4, own, to_end=True)
        else:  # only the range's upper end, for each early_stopping value: the bound of configs.horizon
            ends = [{"length_penalty": HIGH[arch], "early_stopping": es} for es in (True, False, "never")]
            record = record_of(model, inputs, 4, own, horizon=ends)
        _RECORDS[arch, kind] = (model, inputs, record)
    return _RECORDS[arch, kind]


@pytest.mark.parametrize("arch", ["bart", "marian", "t5"])
@settings(max_examples=8, deadline=None, derandomize=True)
@given(lp=st.floats(-1.0, 4.0), es=EARLY_STOPPING, nrs=st.sampled_from([1, 2]))
def test_a_record_to_the_end_replays_every_config(arch, lp, es, nrs):
    model, inputs, record = records(arch, "to_end")
    assert record.complete
    config = {"length_penalty": lp, "early_stopping": es, "num_return_sequences": nrs}
    assert_replay_equals_generate(model, inputs, record, 4, config)


@pytest.mark.parametrize("arch", sorted(HIGH))
@settings(max_examples=8, deadline=None, derandomize=True)
@given(fraction=st.floats(0.0, 1.0), es=EARLY_STOPPING, nrs=st.sampled_from([1, 2]))
def test_a_record_run_to_the_range_end_covers_the_range(arch, fraction, es, nrs):
    lp = -1.0 + fraction * (HIGH[arch] + 1.0)  # in [-1, HIGH[arch]]
    model, inputs, record = records(arch, "horizon")
    assert not record.complete  # stopped early: the bound, not max_length, made it cover the range
    config = {"length_penalty": lp, "early_stopping": es, "num_return_sequences": nrs}
    assert_replay_equals_generate(model, inputs, record, 4, config)


def test_a_config_the_record_does_not_cover_is_not_guessed():
    model, inputs = tiny_model("marian"), batch()
    short = record_of(model, inputs, 4, [{"length_penalty": -1.0, "early_stopping": True}])
    longer = {"length_penalty": 3.0, "early_stopping": "never"}
    full = record_of(model, inputs, 4, [longer])
    assert full.steps > short.steps  # the config really needs more steps than the short pass ran
    covered, uncovered = replay(short, [decoding_kind(model, {"num_beams": 4, **c}, SHARED)[2]
                                        for c in ({"length_penalty": -1.0, "early_stopping": True}, longer)])  # fmt: skip
    assert covered is not None and uncovered is None
    assert_replay_equals_generate(model, inputs, full, 4, longer)


def test_stored_records_replay_through_decode_configs_without_the_model():
    model, inputs = tiny_model("t5"), batch()
    made = PassRecords(horizon=[{"num_beams": 3, "length_penalty": 1.5, "early_stopping": es} for es in (True, False)])
    decode_configs(model, inputs, [{"num_beams": 3, "length_penalty": 0.5}], SHARED, records=made)
    stored = json.loads(json.dumps(made.stored()))  # as the cache and the board keep it
    assert len(stored["batches"]) == 1
    (key,) = stored["batches"]

    def no_model(*_):
        raise AssertionError("a replay ran the model")

    hook = model.register_forward_pre_hook(no_model)
    try:
        configs = [
            {"num_beams": 3, "length_penalty": lp, "early_stopping": es} for lp in (0.3, 1.2) for es in (True, False)
        ]
        outs = decode_configs(model, inputs, configs, SHARED, records=PassRecords(stored, replay_only=True))
        with pytest.raises(NotCovered):  # another num_beams: no record of that pass
            decode_configs(model, inputs, [{"num_beams": 2}], SHARED, records=PassRecords(stored, replay_only=True))
    finally:
        hook.remove()
    for out, config in zip(outs, configs, strict=True):
        ref = reference(model, inputs, SHARED, config)
        assert torch.equal(out.sequences, ref.sequences)
        # its own cost: the steps generate() runs for it alone, and the recorded pass's run it was replayed from
        assert out.own_steps == len(ref.scores) and out.steps == stored["batches"][key]["steps"] >= out.own_steps
        assert out.seconds == stored["batches"][key]["seconds"] > 0
