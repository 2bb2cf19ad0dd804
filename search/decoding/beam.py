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

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

import torch

# The private helpers the hooks replace; their absence means an untested transformers version.
HELPERS = ("_update_finished_beams", "_check_early_stop_heuristic", "_beam_search_has_unfinished_sequences")
# Per-config arguments the replay handles; every other argument must be equal within a pass.
REPLAYED = ("num_beams", "length_penalty", "early_stopping", "num_return_sequences")
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


@dataclass
class Decoded:
    """What ``generate()`` returned for one config.

    Attributes:
        sequences: ``[batch * num_return_sequences, length]`` token ids, equal to ``generate(...)``'s.
        sequences_scores: ``[batch * num_return_sequences]`` beam scores as ``generate(output_scores=True,
            return_dict_in_generate=True)`` gives them; None for greedy and plain-``generate()`` configs.
    """

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None


def helpers_available(model: Any) -> bool:
    """Whether ``model`` has the beam-search helpers the one-pass replay calls."""
    return all(callable(getattr(type(model), name, None)) for name in HELPERS)


def stopping_rule(length_penalty: float, early_stopping: Any) -> Any:
    """``early_stopping`` as the helpers act on it: ``"never"`` is ``False`` when ``length_penalty <= 0`` (they only
    test ``early_stopping is True`` and ``== "never" and length_penalty > 0``).

    Example:
        >>> stopping_rule(0.0, "never"), stopping_rule(1.0, "never"), stopping_rule(-1.0, True)
        (False, 'never', True)
    """
    return False if early_stopping == "never" and not length_penalty > 0.0 else early_stopping


def decoding_kind(model: Any, config: dict, shared: dict) -> tuple[str, tuple, dict] | None:
    """How a config is decoded: ``("beam" | "greedy", pass_key, replay_args)``, or None for plain ``generate()``.

    Configs with equal ``pass_key`` share one pass. ``replay_args`` holds the resolved ``length_penalty``,
    ``early_stopping`` and ``num_return_sequences`` (the model's defaults where the config has none).
    """
    args = {**shared, **config}
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


def decode_configs(model: Any, batch_inputs: dict, configs: list[dict], shared: dict | None = None) -> list[Decoded]:
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
        for (kind, *_), members in passes.items():
            first = {**shared, **configs[members[0][0]]}
            if kind == "greedy":
                out = _generate(model, batch_inputs, first)
                for i, _ in members:
                    results[i] = out
                continue
            args = {k: v for k, v in first.items() if k not in REPLAYED}
            outs = run_pass(model, batch_inputs, args, int(_num_beams(model, first)), [r for _, r in members])
            for (i, _), out in zip(members, outs, strict=True):
                results[i] = out if out is not None else _generate(model, batch_inputs, {**shared, **configs[i]})
    return results  # type: ignore[return-value]


def _num_beams(model: Any, args: dict) -> int:
    return model._prepare_generation_config(None, **args)[0].num_beams


def _generate(model: Any, batch_inputs: dict, args: dict) -> Decoded:
    with torch.no_grad():
        out = model.generate(**batch_inputs, **args)
    return Decoded(out.sequences if hasattr(out, "sequences") else out)


def run_pass(model: Any, batch_inputs: dict, args: dict, num_beams: int, replays: list[dict]) -> list[Decoded | None]:
    """One beam pass of ``generate(**batch_inputs, **args, num_beams=num_beams)`` replayed for each of ``replays``.

    Args:
        replays: ``{"length_penalty", "early_stopping", "num_return_sequences"}`` per config (``decoding_kind`` gives them).

    Returns:
        One ``Decoded`` per replay, or None where the result needs a plain ``generate()`` (see the module docstring).
    """
    tracker = _Tracker(model, replays)
    with _hooked(model, tracker):
        model.generate(
            **batch_inputs, **args, num_beams=num_beams, num_return_sequences=1,
            length_penalty=replays[0]["length_penalty"], early_stopping=replays[0]["early_stopping"],
        )  # fmt: skip
    return tracker.outputs()


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


class _Group:
    """Replay state of the configs that share one ``early_stopping`` value, stacked config-major on the batch axis.

    Row ``c * batch + b`` is batch item ``b`` of config ``c``. ``ids`` stands in for HF's finished ``sequences``.
    """

    def __init__(self, early_stopping: Any, members: list[tuple[int, float]], init: dict):
        self.es = early_stopping
        self.members = members  # (index of the unique replay, length_penalty)
        g = len(members)
        self.ids = init["ids"].repeat(g, 1)  # [g*B, nb] candidate id of each finished slot
        self.scores = init["scores"].repeat(g, 1)  # [g*B, nb] float32
        self.finished = init["finished"].repeat(g, 1)  # [g*B, nb] bool
        self.unsatisfied = torch.ones((self.ids.shape[0], 1), dtype=torch.bool, device=self.ids.device)  # [g*B, 1]

    def divide(self, scores: torch.Tensor, lengths: list[int], batch: int) -> torch.Tensor:
        """``scores`` ``[g*B, k]`` divided row by row by ``length ** length_penalty`` of the row's config, bit for bit
        as HF's ``scores / python_float`` computes it on the scores' device.

        The divisor is computed in Python floats as HF does. The CPU divides by it in float32; CUDA's kernel for a
        CPU-scalar divisor multiplies by its float32 reciprocal instead (``div_true_kernel_cuda``), which can differ
        in the last bit, so the replay does the same there.
        """
        values = [float(n**lp) for n, (_, lp) in zip(lengths, self.members, strict=True)]
        divisors = torch.tensor(values, dtype=torch.float32, device="cpu")  # where HF's Python float lives
        if scores.device.type == "cuda":
            factors = (1.0 / divisors).to(scores.device)
            return scores * factors.repeat_interleave(batch).unsqueeze(1)
        return scores / divisors.to(scores.device).repeat_interleave(batch).unsqueeze(1)

    def keep(self, mask: torch.Tensor, batch: int) -> None:
        """Drop the configs whose ``mask`` entry is False."""
        rows = mask.repeat_interleave(batch)
        self.members = [m for m, k in zip(self.members, mask.tolist(), strict=True) if k]
        self.ids, self.scores = self.ids[rows], self.scores[rows]
        self.finished, self.unsatisfied = self.finished[rows], self.unsatisfied[rows]


class _Tracker:
    """The three hooks of one beam pass: replays every config and stops the pass when the last one stops."""

    def __init__(self, model: Any, replays: list[dict]):
        self.model, self.cls = model, type(model)
        # Configs that only differ in num_return_sequences share one replay, as do those stopping_rule equates.
        self.unique: list[tuple[float, Any]] = []
        self.of_config: list[int] = []
        for r in replays:
            key = (r["length_penalty"], stopping_rule(r["length_penalty"], r["early_stopping"]))
            if key not in self.unique:
                self.unique.append(key)
            self.of_config.append(self.unique.index(key))
        self.nrs = [r["num_return_sequences"] for r in replays]
        self.groups: list[_Group] | None = None
        self.final: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # unique -> (ids, scores, fin)
        self.candidates: list[torch.Tensor] = []  # [n, max_length] token rows; id = position in the concatenation
        self.lengths: list[int] = []  # generated length of each candidate (HF counts it from beam_indices)
        self.n_candidates = 0
        self.prompt_len = 0

    # -- hook 1: called once per step with the top-K continuations, before cur_len is incremented
    def update(self, **kw: Any):
        topk_seqs, topk_scores, hits = (
            kw["topk_running_sequences"],
            kw["topk_log_probs"],
            kw["next_token_hits_stopping_criteria"],
        )
        cur_len, prompt, nb = kw["cur_len"], kw["decoder_prompt_len"], kw["num_beams"]
        batch, k = topk_scores.shape
        if self.groups is None:
            self.prompt_len = prompt
            self._start(kw["sequences"], nb)
        just_finished = hits & kw["top_num_beam_mask"][None, :]
        device = topk_scores.device
        cand = torch.full((batch, k), -1, dtype=torch.int64, device=device)  # -1: an unfinished candidate, not stored
        n = int(just_finished.sum())
        if n:
            cand[just_finished] = torch.arange(self.n_candidates, self.n_candidates + n, device=device)
            self.candidates.append(topk_seqs[just_finished])
            self.lengths += [cur_len + 1 - prompt] * n
            self.n_candidates += n
        for group in self.groups:
            g = len(group.members)
            cand_g = cand.repeat(g, 1).unsqueeze(-1)
            scores = group.divide(topk_scores.repeat(g, 1), [cur_len + 1 - prompt] * g, batch)
            ids, group.scores, _, group.finished = self.cls._update_finished_beams(
                self.model, sequences=group.ids.unsqueeze(-1), topk_running_sequences=cand_g,
                beam_scores=group.scores, topk_log_probs=scores, beam_indices=group.ids.unsqueeze(-1),
                topk_running_beam_indices=cand_g, is_early_stop_heuristic_unsatisfied=group.unsatisfied,
                is_sent_finished=group.finished, next_token_hits_stopping_criteria=hits.repeat(g, 1),
                top_num_beam_mask=kw["top_num_beam_mask"], num_beams=nb, cur_len=cur_len, decoder_prompt_len=prompt,
                length_penalty=0.0, early_stopping=group.es,
            )  # fmt: skip
            group.ids = ids.squeeze(-1)
        return kw["sequences"], kw["beam_scores"], kw["beam_indices"], kw["is_sent_finished"]

    # -- hook 2: after cur_len += 1, with the new running beam scores
    def heuristic(self, **kw: Any):
        cur_len, max_length, prompt = kw["cur_len"], kw["max_length"], kw["decoder_prompt_len"]
        running = kw["running_beam_scores"][:, :1]
        batch = running.shape[0]
        for group in self.groups:
            g = len(group.members)
            lengths = [
                max_length - prompt if group.es == "never" and lp > 0.0 else cur_len - prompt for _, lp in group.members
            ]
            best = group.divide(running.repeat(g, 1), lengths, batch)
            group.unsatisfied = self.cls._check_early_stop_heuristic(
                is_early_stop_heuristic_unsatisfied=group.unsatisfied, running_beam_scores=best,
                beam_scores=group.scores, is_sent_finished=group.finished, cur_len=cur_len, max_length=max_length,
                decoder_prompt_len=prompt, early_stopping=False, length_penalty=0.0,
            )  # fmt: skip
        return kw["is_early_stop_heuristic_unsatisfied"]

    # -- hook 3: the loop condition; per config it is HF's helper applied to that config's rows
    def unfinished(self, unsatisfied, finished, hits, early_stopping):
        valid_continuations = ~torch.all(hits)
        batch = hits.shape[0]
        for group in self.groups:
            g = len(group.members)
            improvement_possible = group.unsatisfied.view(g, batch).any(dim=1)
            exists_open_beam = ~(group.finished.view(g, -1).all(dim=1) & (group.es is True))
            going = improvement_possible & exists_open_beam & valid_continuations
            if not bool(going.all()):
                for c in (~going).nonzero().flatten().tolist():
                    rows = slice(c * batch, (c + 1) * batch)
                    self.final[group.members[c][0]] = (group.ids[rows], group.scores[rows], group.finished[rows])
                group.keep(going, batch)
        self.groups = [group for group in self.groups if group.members]
        return torch.tensor(bool(self.groups), device=hits.device) & valid_continuations

    def _start(self, sequences: torch.Tensor, nb: int) -> None:
        """Initial finished slots: HF's ``sequences`` (prompt + fill) become candidates ``0..B-1``."""
        batch = sequences.shape[0]
        self.candidates.append(sequences[:, 0, :])
        self.lengths += [0] * batch
        self.n_candidates = batch
        device = sequences.device
        init = {
            "ids": torch.arange(batch, device=device).unsqueeze(1).repeat(1, nb),
            "scores": torch.full((batch, nb), -1e9, dtype=torch.float, device=device),
            "finished": torch.zeros((batch, nb), dtype=torch.bool, device=device),
        }
        by_es: dict[str, list[tuple[int, float]]] = {}
        for u, (lp, es) in enumerate(self.unique):
            by_es.setdefault(repr(es), []).append((u, lp))
        self.groups = [_Group(self.unique[m[0][0]][1], m, init) for m in by_es.values()]

    def outputs(self) -> list[Decoded | None]:
        """Each config's sequences and scores, cropped as ``_beam_search`` crops them."""
        table = torch.cat(self.candidates)  # [n_candidates, max_length]
        lengths = torch.tensor(self.lengths, device=table.device)
        outs: list[Decoded | None] = []
        for u, nrs in zip(self.of_config, self.nrs, strict=True):
            ids, scores, _ = self.final[u]
            ids, scores = ids[:, :nrs].flatten(), scores[:, :nrs].flatten()
            if bool((ids < 0).any()):
                outs.append(None)  # a returned slot holds an unfinished candidate: recompute this config
                continue
            output_length = self.prompt_len + int(lengths[ids].max())
            outs.append(Decoded(table[ids, :output_length].clone(), scores.clone()))
        return outs
