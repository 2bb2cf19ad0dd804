"""Exact one-pass decoding of many beam-search configs: one beam pass per ``num_beams``, replayed per config.

In transformers 5.23 beam search picks its running beams by raw cumulative log-probability only; ``length_penalty``
and ``early_stopping`` enter only three helpers of ``GenerationMixin``: ``_update_finished_beams`` (which finished
hypotheses are kept), ``_check_early_stop_heuristic`` and ``_beam_search_has_unfinished_sequences`` (when the loop
stops). So one ``generate()`` call per distinct ``num_beams`` (and distinct other arguments), with those three helpers
replaced on the model instance, gives every (length_penalty, early_stopping, num_return_sequences) config at once:
at each step the hooks call HF's own helpers for every config, stacked along the batch dimension, and the pass runs
until the last config would have stopped.

Two things keep the replay cheap without changing a single float operation:
- HF's helpers only concatenate, ``topk`` and gather the finished-beam tensors, so the replay passes a one-element
  *candidate id* per beam instead of the full token sequence; the sequences of finished candidates are kept once per
  pass (a few per step) and looked up at the end.
- ``length_penalty`` enters as ``score / (length ** length_penalty)`` with a Python float. The replay calls the helpers
  with ``length_penalty=0.0`` (a division by exactly 1.0) on scores already divided row by row by the same float32
  divisor, which is the same IEEE operation (checked by ``tests/test_beam.py`` against ``generate()``; on CUDA, where
  torch multiplies by the divisor's reciprocal instead, the replay does too: see ``_Group.divide``).

A returned slot that holds an unfinished candidate (possible only in corner cases) cannot be looked up; that config is
then recomputed with plain ``generate()``, never guessed.

Every tensor the replay creates is created on the device of the tensors HF hands the hooks (the model's), so a pass
on a GPU stays there; under autocast the replay still sees HF's float32 scores, so it stays exact in bf16/fp16 too.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import time
import warnings
import weakref
from typing import Any

import torch

from search.decoding.cache import RECORD_FORMAT, digest
from search.decoding.configs import PASS_FREE, REPLAYED
from search.decoding.records import BatchRecord, Decoded, Recorder, Replayer, replay
from search.decoding.records import stopping_rule as stopping_rule  # re-exported: callers use it here

# The private helpers the hooks replace; their absence means an untested transformers version.
HELPERS = ("_update_finished_beams", "_check_early_stop_heuristic", "_beam_search_has_unfinished_sequences")
# Arguments that act on the running beams only (logits processors, lengths, ids): shared by the configs of one pass.
SHARED_OK = frozenset(
    {
        "max_new_tokens", "max_length", "min_length", "min_new_tokens", "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size", "repetition_penalty", "encoder_repetition_penalty", "bad_words_ids",
        "forced_bos_token_id", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens", "sequence_bias",
        "exponential_decay_length_penalty", "renormalize_logits", "remove_invalid_values", "eos_token_id",
        "pad_token_id", "bos_token_id", "decoder_start_token_id", "use_cache", "do_sample",
    }
)  # fmt: skip


def helpers_available(model: Any) -> bool:
    """Whether ``model`` has the beam-search helpers the one-pass replay calls."""
    return all(callable(getattr(type(model), name, None)) for name in HELPERS)


# decoding_kind's answers per model, by its generation config and the arguments: resolving a generation config
# deep-copies it (~0.7 ms a config), which a sweep paid for every config of every batch (~2% of a num_beams=5 pass).
_KINDS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], tuple | None]] = weakref.WeakKeyDictionary()
_KINDS_KEPT = 4096  # answers kept per model; a continuous search asks about a new config every trial


def decoding_kind(model: Any, config: dict, shared: dict) -> tuple[str, tuple, dict] | None:
    """How a config is decoded: ``("beam" | "greedy", pass_key, replay_args)``, or None for plain ``generate()``.

    Configs with equal ``pass_key`` share one pass. ``replay_args`` holds the resolved ``length_penalty``,
    ``early_stopping`` and ``num_return_sequences`` (the model's defaults where the config has none).
    """
    args = {**shared, **config}
    # The generation config's attributes are part of the key, so that a change to it is seen.
    key = (repr(sorted(vars(model.generation_config).items())), repr(sorted(args.items())))
    memo = _KINDS.setdefault(model, {})
    if key not in memo:
        if len(memo) >= _KINDS_KEPT:
            memo.clear()
        memo[key] = _decoding_kind(model, args)
    how = memo[key]
    return None if how is None else (how[0], how[1], dict(how[2]))


def _decoding_kind(model: Any, args: dict) -> tuple[str, tuple, dict] | None:
    if any(key not in REPLAYED and key not in SHARED_OK for key in args):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gen = model._prepare_generation_config(None, **args)[0]
        mode = gen.get_generation_mode().value
    except Exception:  # an invalid combination: let generate() raise its own error
        return None
    rest = tuple(sorted((k, repr(v)) for k, v in args.items() if k not in REPLAYED))
    if mode == "greedy_search" and (gen.num_return_sequences or 1) == 1:
        return "greedy", (1, rest), {}
    if mode != "beam_search" or not helpers_available(model):
        return None
    nrs = gen.num_return_sequences or 1
    if nrs > gen.num_beams:
        return None
    replay = {"length_penalty": gen.length_penalty, "early_stopping": gen.early_stopping, "num_return_sequences": nrs}
    return "beam", (gen.num_beams, rest), replay


def canonical(model: Any, args: dict, shared: dict) -> tuple[tuple, dict]:
    """``(pass key, canonical config)``: configs with equal canonical configs decode to the same text.

    Greedy decoding ignores ``length_penalty``/``early_stopping``; :func:`stopping_rule` equates ``"never"`` with
    ``False`` when ``length_penalty <= 0``; the top hypothesis does not depend on ``num_return_sequences``.
    """
    how = decoding_kind(model, args, shared)
    if how is None:
        return ("plain", digest({**shared, **args})), dict(args)
    kind, pass_key, replay = how
    rest = {k: v for k, v in args.items() if k not in PASS_FREE}
    if kind == "greedy":
        return (kind, *pass_key), {**rest, "num_beams": 1}
    lp = replay["length_penalty"]
    return (kind, *pass_key), {
        **rest,
        "length_penalty": lp,
        "early_stopping": stopping_rule(lp, replay["early_stopping"]),
    }


def decode_configs(
    model: Any, batch_inputs: dict, configs: list[dict], shared: dict | None = None, records: PassRecords | None = None
) -> list[Decoded]:
    """Decode one batch with every config, exactly as ``model.generate(**batch_inputs, **shared, **config)`` would.

    Beam configs that differ only in ``length_penalty``, ``early_stopping`` and ``num_return_sequences`` share one beam
    pass; greedy configs (``num_beams=1``, where those are inert) share one greedy call; anything else (sampling,
    constraints, an argument outside ``SHARED_OK``) runs its own ``generate()``.

    Args:
        model: a transformers seq2seq model (eval mode).
        batch_inputs: the tokenized batch (``input_ids``, ``attention_mask``); keep it fixed between comparisons,
            since padding changes scores by ~1e-6.
        configs: ``generate()`` keyword arguments per config.
        shared: keyword arguments common to all configs (``max_new_tokens``, ``min_length``, ...).
        records: where beam passes are recorded, or replayed from (see :class:`PassRecords`).

    Returns:
        One ``Decoded`` per config, in order.

    Example:
        >>> import tempfile
        >>> from search.models import build_model
        >>> _ = torch.manual_seed(0)
        >>> sizes = {"arch": "bart", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 300}
        >>> model, tokenizer = build_model(sizes, lambda: ["hola mundo", "hello world"], cache_dir=tempfile.mkdtemp())
        >>> batch = tokenizer(["hola", "hello world"], return_tensors="pt", padding=True)
        >>> shared = {"max_new_tokens": 6, "max_length": None}
        >>> configs = [{"num_beams": 4, "length_penalty": lp, "early_stopping": es} for lp in (0.6, 2.0) for es in (True, False)]
        >>> outs = decode_configs(model.eval(), batch, configs, shared)
        >>> all(torch.equal(out.sequences, model.generate(**batch, **shared, **config)) for out, config in zip(outs, configs))
        True
    """
    shared = dict(shared or {})
    if not helpers_available(model):
        warnings.warn(
            "transformers has no " + ", ".join(HELPERS) + ": one-pass beam replay is off, every config runs generate()",
            stacklevel=2,
        )
    results: list[Decoded | None] = [None] * len(configs)
    passes: dict[tuple, list[tuple[int, dict]]] = {}
    for i, config in enumerate(configs):
        how = decoding_kind(model, config, shared)
        if how is None:
            results[i] = _generate(model, batch_inputs, {**shared, **config})
        else:
            passes.setdefault((how[0], *how[1]), []).append((i, how[2]))
    with torch.no_grad():
        for pass_id, members in passes.items():
            kind = pass_id[0]
            first = {**shared, **configs[members[0][0]]}
            if kind == "greedy":
                out = _generate(model, batch_inputs, first)
                for i, _ in members:
                    results[i] = out
                continue
            args = {k: v for k, v in first.items() if k not in REPLAYED}
            nb, replays = int(pass_id[1]), [r for _, r in members]  # a beam pass's key starts with num_beams
            if records is None:
                outs = run_pass(model, batch_inputs, args, nb, replays)[0]
            else:
                outs = records.outputs(model, batch_inputs, args, nb, replays, tuple(pass_id[1:]), shared)
            for (i, _), out in zip(members, outs, strict=True):
                results[i] = out if out is not None else _generate(model, batch_inputs, {**shared, **configs[i]})
    return results  # type: ignore[return-value]


def _generate(model: Any, batch_inputs: dict, args: dict) -> Decoded:
    """``generate()``, counting its decoder steps (each step is one call of the model; the encoder runs apart)."""
    steps = []
    hook = model.register_forward_pre_hook(lambda *_: steps.append(1))
    start = time.perf_counter()
    try:
        with torch.no_grad():
            out = model.generate(**batch_inputs, **args)
    finally:
        hook.remove()
    sequences = out.sequences if hasattr(out, "sequences") else out
    return Decoded(sequences, steps=len(steps), own_steps=len(steps), seconds=time.perf_counter() - start)


def run_pass(
    model: Any,
    batch_inputs: dict,
    args: dict,
    num_beams: int,
    replays: list[dict],
    horizon: list[dict] = (),  # type: ignore[assignment]
    to_end: bool = False,
) -> tuple[list[Decoded | None], BatchRecord]:
    """One beam pass of ``generate(**batch_inputs, **args, num_beams=num_beams)`` replayed for each of ``replays``.

    Args:
        replays: ``{"length_penalty", "early_stopping", "num_return_sequences"}`` per config (``decoding_kind`` gives them).
        horizon: more replays the pass runs long enough for (so that its record covers them), not returned.
        to_end: run until no running beam can continue (``max_length``): the record then covers every config.

    Returns:
        One ``Decoded`` per replay, or None where the result needs a plain ``generate()`` (see the module docstring),
        and the pass's record (``search.decoding.records``).
    """
    tracker = _Tracker(model, [*replays, *horizon], to_end)
    start = time.perf_counter()
    with _hooked(model, tracker):
        model.generate(
            **batch_inputs, **args, num_beams=num_beams, num_return_sequences=1,
            length_penalty=replays[0]["length_penalty"], early_stopping=replays[0]["early_stopping"],
        )  # fmt: skip
    record = tracker.recorder.record
    record.seconds = time.perf_counter() - start
    outs = tracker.replayer.outputs(record, len(replays))
    for out in outs:
        if out is not None:
            out.steps, out.seconds = record.steps, record.seconds
    return outs, record


@functools.lru_cache(maxsize=32)
def _stored_record(data: str, device: str) -> BatchRecord:
    """A stored batch record, read once per process: a continuous search replays every sample from the same few
    records, and reading one (``torch.load``) took longer than replaying a config from it. The replay only reads it."""
    return BatchRecord.from_bytes(base64.b64decode(data), device)


class NotCovered(LookupError):
    """A config the stored records of a pass do not cover (the pass stopped before it would): decode it."""


class PassRecords:
    """The records of the beam passes over a dev set's fixed batches, by batch, in a form the caches store.

    Give it to :func:`decode_configs` to make records while decoding (each beam pass runs until ``horizon``'s configs
    would stop too, or to the end with ``to_end``), or, with ``stored`` and ``replay_only``, to replay configs from
    the records without running the model (:class:`NotCovered` when they do not cover one).

    Args:
        stored: records in stored form (:meth:`stored`; ``cache.merge_records`` merges two).
        horizon: ``generate()`` configs every pass must cover, each in the pass it belongs to.
        to_end: run every pass until no running beam can continue.
        replay_only: never run the model.
    """

    def __init__(self, stored: dict | None = None, horizon: list[dict] = (), to_end: bool = False,  # type: ignore[assignment]
                 replay_only: bool = False):  # fmt: skip
        self.horizon, self.to_end, self.replay_only = list(horizon), to_end, replay_only
        self._stored = dict((stored or {}).get("batches", {}))
        self._made: dict[str, BatchRecord] = {}

    def outputs(self, model: Any, inputs: dict, args: dict, num_beams: int, replays: list[dict], pass_key: tuple,
                shared: dict) -> list[Decoded | None]:  # fmt: skip
        """One pass's outputs: replayed from its batch's record (``replay_only``), else decoded and recorded."""
        key = digest({"ids": inputs["input_ids"].tolist(), "args": args, "num_beams": num_beams})
        if self.replay_only:
            if key not in self._stored:
                raise NotCovered(f"no record of this batch for num_beams={num_beams}")
            stored = self._stored[key]
            outs = replay(_stored_record(stored["data"], str(inputs["input_ids"].device)), replays)
            if any(out is None for out in outs):
                raise NotCovered(f"the recorded pass (num_beams={num_beams}) stopped before this config would")
            for out in outs:  # the recorded pass's run, for the config's own cost (records made before: no seconds)
                out.steps, out.seconds = stored["steps"], stored.get("seconds", 0.0)
            return outs
        extra = [
            how[2]
            for config in self.horizon
            if (how := decoding_kind(model, config, shared)) is not None and (how[0], *how[1]) == ("beam", *pass_key)
        ]
        outs, self._made[key] = run_pass(model, inputs, args, num_beams, replays, extra, self.to_end)
        return outs

    def stored(self) -> dict:
        """The records made here as JSON-able data: per batch its steps, whether it ran to the end, the bytes."""
        made = {
            key: {
                "steps": r.steps,
                "complete": r.complete,
                "seconds": r.seconds,
                "data": base64.b64encode(r.to_bytes()).decode("ascii"),
            }  # fmt: skip
            for key, r in self._made.items()
        }
        return {"format": RECORD_FORMAT, "batches": made}


@contextlib.contextmanager
def _hooked(model: Any, tracker: _Tracker):
    """Replace the three helpers on this instance only (instance attributes shadow the class's methods)."""
    hooks = {
        "_update_finished_beams": tracker.update,
        "_check_early_stop_heuristic": tracker.heuristic,
        "_beam_search_has_unfinished_sequences": tracker.unfinished,
    }
    for name, hook in hooks.items():
        setattr(model, name, hook)
    try:
        yield
    finally:
        for name in hooks:
            with contextlib.suppress(AttributeError):
                delattr(model, name)


class _Tracker:
    """The three hooks of one beam pass: records each step, replays every config on it, and stops the pass when the
    last config stops (or, ``to_end``, when no running beam can continue)."""

    def __init__(self, model: Any, replays: list[dict], to_end: bool):
        self.recorder, self.replayer, self.to_end = Recorder(), Replayer(replays, model), to_end

    # -- hook 1: called once per step with the top-K continuations, before cur_len is incremented
    def update(self, **kw: Any):
        self.recorder.update(kw)
        self.replayer.update(
            kw["topk_log_probs"], kw["next_token_hits_stopping_criteria"], kw["top_num_beam_mask"], kw["cur_len"],
            kw["decoder_prompt_len"], kw["num_beams"],
        )  # fmt: skip
        return kw["sequences"], kw["beam_scores"], kw["beam_indices"], kw["is_sent_finished"]

    # -- hook 2: after cur_len += 1, with the new running beam scores
    def heuristic(self, **kw: Any):
        self.recorder.heuristic(kw["running_beam_scores"])
        self.replayer.heuristic(
            kw["running_beam_scores"][:, :1], kw["cur_len"], kw["max_length"], kw["decoder_prompt_len"]
        )
        return kw["is_early_stop_heuristic_unsatisfied"]

    # -- hook 3: the loop condition
    def unfinished(self, unsatisfied, finished, hits, early_stopping):
        going = self.replayer.unfinished(hits) if self.replayer.groups else False
        return torch.tensor(going or (self.to_end and not bool(hits.all())), device=hits.device)
