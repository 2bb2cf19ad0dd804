"""The record of a beam pass, and the replay of any (length_penalty, early_stopping, num_return_sequences) from it.

A beam pass records, per step, exactly what HF's finished-beam and stopping helpers consume (see ``beam``): the raw
cumulative log-probabilities of the top-K continuations (``[B, K]`` float32, the values HF divides by
``length ** length_penalty``), which of them hit a stopping criterion, and the best running raw score per batch item
after the step (what ``_check_early_stop_heuristic`` compares). The token rows of the candidates that finished are
kept once, in the order they finished (their ids). :class:`Replayer` feeds those steps to HF's own helpers for any
set of configs, stacked along the batch axis, so the same code serves the live pass (``beam.run_pass``) and a replay
from a stored record (:func:`replay`), which runs without the model.

A record only covers a config the pass ran long enough for: when the record ends (its pass stopped because its own
configs stopped) while the config would still go on, :func:`replay` returns None for it; the caller decodes it.
A pass that ran until no running beam could continue (``max_length`` reached) covers every config of its
``num_beams``. The unfinished candidates' scores are kept too: they compete with the ``-1e9`` fill of empty
finished slots in HF's ``topk``, which decides corner cases.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch

# transformers' GenerationMixin: its finished-beam helpers only call static helpers, so the class itself serves as
# ``self`` when no model is at hand (a replay from a stored record).
_MIXIN: Any = None


def _mixin() -> Any:
    global _MIXIN
    if _MIXIN is None:
        from transformers.generation.utils import GenerationMixin

        _MIXIN = GenerationMixin
    return _MIXIN


def stopping_rule(length_penalty: float, early_stopping: Any) -> Any:
    """``early_stopping`` as the helpers act on it: ``"never"`` is ``False`` when ``length_penalty <= 0`` (they only
    test ``early_stopping is True`` and ``== "never" and length_penalty > 0``).

    Example:
        >>> stopping_rule(0.0, "never"), stopping_rule(1.0, "never"), stopping_rule(-1.0, True)
        (False, 'never', True)
    """
    return False if early_stopping == "never" and not length_penalty > 0.0 else early_stopping


@dataclass
class Decoded:
    """What ``generate()`` returned for one config.

    Attributes:
        sequences: ``[batch * num_return_sequences, length]`` token ids, equal to ``generate(...)``'s.
        sequences_scores: ``[batch * num_return_sequences]`` beam scores as ``generate(output_scores=True,
            return_dict_in_generate=True)`` gives them; None for greedy and plain-``generate()`` configs.
        steps: decoder steps of the model run that produced it (a beam pass's steps are shared by all its configs;
            a replay from a stored record: the recorded pass's, though no model ran here).
        own_steps: decoder steps ``generate()`` with this config alone runs (a beam config: the step its search
            stops at, replayed; a plain call: its steps).
        seconds: the seconds of that model run (a replay: the recorded pass's; 0 when the record has none).
    """

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    steps: int = 0
    own_steps: int = 0
    seconds: float = 0.0


@dataclass
class BatchRecord:
    """One beam pass over one batch, step by step (step ``t`` runs at ``cur_len = first_len + t``).

    Attributes:
        num_beams, prompt_len, max_length: as HF's beam loop has them.
        first_len: ``cur_len`` at the first step.
        top_mask: ``[K]`` bool, HF's ``top_num_beam_mask`` (the first ``num_beams`` of ``K`` continuations).
        scores: per step ``[B, K]`` float32 raw cumulative log-probabilities of the top-K continuations.
        hits: per step ``[B, K]`` bool, the continuations that hit a stopping criterion (EOS, max length).
        running: per step ``[B, 1]`` float32, the best running raw score after the step.
        candidates: token rows of the candidates, ``[n_s, prompt_len + length_s]`` per chunk: first the ``B``
            initial rows (HF's empty finished slots, length 0), then each step's newly finished ones, in id order.
        lengths: generated length of each candidate (the divisor's base).
        fill: the token HF's finished ``sequences`` are filled with beyond a candidate's length.
    """

    num_beams: int
    prompt_len: int
    max_length: int
    first_len: int
    top_mask: torch.Tensor
    fill: int
    scores: list[torch.Tensor] = field(default_factory=list)
    hits: list[torch.Tensor] = field(default_factory=list)
    running: list[torch.Tensor] = field(default_factory=list)
    candidates: list[torch.Tensor] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the pass (its model run), for the cost of the configs replayed from it

    @property
    def steps(self) -> int:
        return len(self.running)

    @property
    def complete(self) -> bool:
        """Whether the pass ended because no running beam could continue: then every config had stopped too."""
        return bool(self.hits) and bool(self.hits[-1].all())

    def table(self) -> torch.Tensor:
        """``[n_candidates, prompt_len + longest]`` candidate rows, filled as HF fills its finished sequences."""
        width = self.prompt_len + max(self.lengths)
        first = self.candidates[0]
        table = torch.full((len(self.lengths), width), self.fill, dtype=first.dtype, device=first.device)
        row = 0
        for chunk in self.candidates:
            table[row : row + chunk.shape[0], : chunk.shape[1]] = chunk
            row += chunk.shape[0]
        return table

    def to_bytes(self) -> bytes:
        """The record as ``torch.save`` bytes (on the CPU; read back with :meth:`from_bytes`)."""
        state = {k: v for k, v in vars(self).items()}
        for key in ("scores", "hits", "running", "candidates"):
            state[key] = [t.cpu() for t in state[key]]
        state["top_mask"] = self.top_mask.cpu()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, device: torch.device | str = "cpu") -> BatchRecord:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location=device)
        return cls(**state)


class Recorder:
    """Builds the :class:`BatchRecord` of a live pass from what HF hands the hooks."""

    def __init__(self) -> None:
        self.record: BatchRecord | None = None

    def update(self, kw: dict[str, Any]) -> None:
        """From ``_update_finished_beams``'s arguments: the step's scores, hits and newly finished candidates."""
        scores, hits, cur_len, prompt = (
            kw["topk_log_probs"], kw["next_token_hits_stopping_criteria"], kw["cur_len"], kw["decoder_prompt_len"],
        )  # fmt: skip
        if self.record is None:
            sequences = kw["sequences"]  # [B, nb, max_length]: prompt + fill
            fill = int(sequences[0, 0, -1]) if sequences.shape[-1] > prompt else 0
            self.record = BatchRecord(
                kw["num_beams"], prompt, sequences.shape[-1], cur_len, kw["top_num_beam_mask"].clone(), fill
            )
            self.record.candidates.append(sequences[:, 0, :prompt].clone())
            self.record.lengths += [0] * sequences.shape[0]
        just = hits & kw["top_num_beam_mask"][None, :]
        self.record.scores.append(scores.clone())
        self.record.hits.append(hits.clone())
        n = int(just.sum())
        if n:
            self.record.candidates.append(kw["topk_running_sequences"][just][:, : cur_len + 1].clone())
            self.record.lengths += [cur_len + 1 - prompt] * n

    def heuristic(self, running_beam_scores: torch.Tensor) -> None:
        self.record.running.append(running_beam_scores[:, :1].clone())


class _Group:
    """Replay state of the configs that agree on ``early_stopping is True``, stacked config-major on the batch axis.

    Row ``c * batch + b`` is batch item ``b`` of config ``c``. ``ids`` stands in for HF's finished ``sequences``.
    The helpers test ``early_stopping is True`` alone, except the early-stop heuristic, which tests ``"never"``; it
    is per member here, so that ``False`` and ``"never"`` share one group: one helper call per step, not two.
    """

    def __init__(self, full_stops: bool, members: list[tuple[int, float, bool]], batch: int, nb: int, device):
        self.full_stops = full_stops  # early_stopping is True: a batch item stops once its num_beams slots finish
        self.members = members  # (index of the unique replay, length_penalty, early_stopping == "never")
        rows = len(members) * batch
        self.ids = torch.arange(batch, device=device).repeat(len(members)).unsqueeze(1).repeat(1, nb)  # [g*B, nb]
        self.scores = torch.full((rows, nb), -1e9, dtype=torch.float, device=device)  # [g*B, nb] float32
        self.finished = torch.zeros((rows, nb), dtype=torch.bool, device=device)  # [g*B, nb]
        self.unsatisfied = torch.ones((rows, 1), dtype=torch.bool, device=device)  # [g*B, 1]

    def divide(self, scores: torch.Tensor, lengths: list[int], batch: int) -> torch.Tensor:
        """``scores`` ``[g*B, k]`` divided row by row by ``length ** length_penalty`` of the row's config, bit for bit
        as HF's ``scores / python_float`` computes it on the scores' device.

        The divisor is computed in Python floats as HF does. The CPU divides by it in float32; CUDA's kernel for a
        CPU-scalar divisor multiplies by its float32 reciprocal instead (``div_true_kernel_cuda``), which can differ
        in the last bit, so the replay does the same there.
        """
        values = [float(n**lp) for n, (_, lp, _) in zip(lengths, self.members, strict=True)]
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


class Replayer:
    """Every config's finished slots and stopping state, advanced step by step with HF's own helpers.

    Args:
        replays: ``{"length_penalty", "early_stopping", "num_return_sequences"}`` per config.
        model: the model whose helpers are called (a live pass), or None (a stored record: GenerationMixin's).
    """

    def __init__(self, replays: list[dict], model: Any = None):
        self.cls = type(model) if model is not None else _mixin()
        self.this = model if model is not None else self.cls
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
        self.final: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}  # unique -> (ids, scores, steps) at its stop
        self.n_candidates = 0
        self.steps = 0  # steps replayed so far

    def update(self, scores, hits, top_mask, cur_len: int, prompt: int, nb: int) -> None:
        """``_update_finished_beams`` for every config; the newly finished candidates get the next ids."""
        batch, k = scores.shape
        device = scores.device
        self.steps += 1
        if self.groups is None:
            self._start(batch, nb, device)
        just_finished = hits & top_mask[None, :]
        cand = torch.full((batch, k), -1, dtype=torch.int64, device=device)  # -1: an unfinished candidate
        n = int(just_finished.sum())
        cand[just_finished] = torch.arange(self.n_candidates, self.n_candidates + n, device=device)
        self.n_candidates += n
        for group in self.groups:
            g = len(group.members)
            cand_g = cand.repeat(g, 1).unsqueeze(-1)
            divided = group.divide(scores.repeat(g, 1), [cur_len + 1 - prompt] * g, batch)
            ids, group.scores, _, group.finished = self.cls._update_finished_beams(
                self.this, sequences=group.ids.unsqueeze(-1), topk_running_sequences=cand_g,
                beam_scores=group.scores, topk_log_probs=divided, beam_indices=group.ids.unsqueeze(-1),
                topk_running_beam_indices=cand_g, is_early_stop_heuristic_unsatisfied=group.unsatisfied,
                is_sent_finished=group.finished, next_token_hits_stopping_criteria=hits.repeat(g, 1),
                top_num_beam_mask=top_mask, num_beams=nb, cur_len=cur_len, decoder_prompt_len=prompt,
                length_penalty=0.0, early_stopping=group.full_stops,
            )  # fmt: skip
            group.ids = ids.squeeze(-1)

    def heuristic(self, running: torch.Tensor, cur_len: int, max_length: int, prompt: int) -> None:
        """``_check_early_stop_heuristic`` for every config (``running``: ``[B, 1]`` best running raw score)."""
        batch = running.shape[0]
        for group in self.groups:
            g = len(group.members)
            lengths = [max_length - prompt if never else cur_len - prompt for _, _, never in group.members]
            best = group.divide(running.repeat(g, 1), lengths, batch)
            group.unsatisfied = self.cls._check_early_stop_heuristic(
                is_early_stop_heuristic_unsatisfied=group.unsatisfied, running_beam_scores=best,
                beam_scores=group.scores, is_sent_finished=group.finished, cur_len=cur_len, max_length=max_length,
                decoder_prompt_len=prompt, early_stopping=False, length_penalty=0.0,
            )  # fmt: skip

    def unfinished(self, hits: torch.Tensor) -> bool:
        """``_beam_search_has_unfinished_sequences`` per config (on that config's rows); the configs that stop keep
        their finished slots. Returns whether any config goes on."""
        valid_continuations = ~torch.all(hits)
        batch = hits.shape[0]
        for group in self.groups:
            g = len(group.members)
            improvement_possible = group.unsatisfied.view(g, batch).any(dim=1)
            exists_open_beam = ~(group.finished.view(g, -1).all(dim=1) & group.full_stops)
            going = improvement_possible & exists_open_beam & valid_continuations
            if not bool(going.all()):
                for c in (~going).nonzero().flatten().tolist():
                    rows = slice(c * batch, (c + 1) * batch)
                    self.final[group.members[c][0]] = (group.ids[rows], group.scores[rows], self.steps)
                group.keep(going, batch)
        self.groups = [group for group in self.groups if group.members]
        return bool(self.groups) and bool(valid_continuations)

    def _start(self, batch: int, nb: int, device) -> None:
        """Initial finished slots: HF's empty ``sequences`` rows are candidates ``0..B-1``."""
        self.n_candidates = batch
        by_rule: dict[bool, list[tuple[int, float, bool]]] = {}
        for u, (lp, es) in enumerate(self.unique):  # es is stopping_rule's: "never" has length_penalty > 0
            by_rule.setdefault(es is True, []).append((u, lp, es == "never"))
        self.groups = [_Group(full_stops, m, batch, nb, device) for full_stops, m in by_rule.items()]

    def outputs(self, record: BatchRecord, count: int | None = None) -> list[Decoded | None]:
        """The first ``count`` configs' sequences and scores, cropped as ``_beam_search`` crops them; None for a
        config that had not stopped when the record ended, or whose returned slot holds an unfinished candidate."""
        table = record.table()  # [n_candidates, width]
        lengths = torch.tensor(record.lengths, device=table.device)
        outs: list[Decoded | None] = []
        for u, nrs in list(zip(self.of_config, self.nrs, strict=True))[:count]:
            if u not in self.final:
                outs.append(None)  # the pass stopped before this config would: not covered
                continue
            ids, scores, steps = self.final[u]
            ids, scores = ids[:, :nrs].flatten(), scores[:, :nrs].flatten()
            if bool((ids < 0).any()):
                outs.append(None)  # a returned slot holds an unfinished candidate: recompute this config
                continue
            output_length = record.prompt_len + int(lengths[ids].max())
            outs.append(Decoded(table[ids, :output_length].clone(), scores.clone(), own_steps=steps))
        return outs


def replay(record: BatchRecord, replays: list[dict]) -> list[Decoded | None]:
    """Each config of ``replays`` decoded from ``record`` without the model, exactly as ``generate()`` gives it, or
    None where the record does not cover it (its pass stopped first) or a plain ``generate()`` is needed.

    Args:
        record: a pass's record (:class:`BatchRecord`).
        replays: ``{"length_penalty", "early_stopping", "num_return_sequences"}`` per config.
    """
    replayer = Replayer(replays)
    for t in range(record.steps):
        cur_len = record.first_len + t
        replayer.update(record.scores[t], record.hits[t], record.top_mask, cur_len, record.prompt_len, record.num_beams)
        replayer.heuristic(record.running[t], cur_len + 1, record.max_length, record.prompt_len)
        if not replayer.unfinished(record.hits[t]):
            break
    return replayer.outputs(record)


__all__ = ["BatchRecord", "Decoded", "Recorder", "Replayer", "replay", "stopping_rule"]
