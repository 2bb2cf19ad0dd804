"""The ``decode`` trainable: one trial per ``generate()`` config, scored on a dev set (BLEU, chrF, ROUGE, ...).

Searched parameters arrive at the top level of the config and are passed to ``generate()`` as they are (``num_beams``,
``length_penalty``, ``early_stopping``, ``no_repeat_ngram_size``, ``do_sample``, ``top_p``, ...); ``model``, ``data``
and ``settings`` (``decode_config.SETTING_DEFAULTS``) are fixed for the sweep.

Trials that share a beam pass do not redo it, on any node. The driver's hooks are in ``search.trainables.decode_config``
(no torch there): ``prepare`` (called by the runner before the sweep) stores the grid of searched values in
``settings["decode_plan"]``; ``start`` (called by the runner once Ray is up) creates the sweep's pass board, a Ray actor
(``search.decoding.board``), and names it in ``settings["pass_board"]``. The first trial that needs a pass gets a lease
on it from the board and decodes, with ``search.decoding``, every planned config of that pass at once; it puts the
entries on the board, where concurrent trials of the pass, waiting, find them and only score. A holder that dies loses
its lease within ``board.LEASE_TTL_S`` and another trial takes the pass over. Each trial also keeps what it decoded or
got in ``search.decoding.cache`` under ``settings["cache_dir"]`` and reads that first, so later runs on the machine
reuse it (without a board, the cache's file lock coordinates one machine's trials). A config the plan does not name (a
continuous ``length_penalty`` from hyperopt, a resumed run with another grid) is decoded on its own, exactly. Batches
are fixed (sources sorted by length, ``batch_size`` each) so that every config sees the same padding.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch

from search.decoding import (
    DecodeCache,
    canonical,
    config_label,
    decode_configs,
    digest,
    model_fingerprint,
    open_board,
    plain_args,
    planned_configs,
    share,
    source_batches,
)
from search.decoding.beam import NotCovered, PassRecords
from search.decoding.board import RECORD
from search.decoding.configs import horizon
from search.metrics import corpus_scores
from search.models import local_model
from search.sections import searched
from search.trainables.common import use_trial_cpus
from search.trainables.decode_config import resolve_settings
from search.trainables.device import PRECISIONS, Compute
from search.trainables.outputs import write_generate_args, write_translations

_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}  # one model per worker process, by fingerprint and device


def generation_args(config: dict) -> dict:
    """The ``generate()`` arguments of a trial's config: its searched parameters, as plain Python values."""
    return plain_args(searched(config))


def shared_args(settings: dict) -> dict:
    """The ``generate()`` arguments every trial of the sweep shares (``max_new_tokens``, ``settings.generate``)."""
    # max_length=None: the model's own max_length would clash with max_new_tokens (and warn on every call).
    return {"max_new_tokens": settings["max_new_tokens"], "max_length": None, **settings["generate"]}


def load(model_spec: Any, settings: dict, data: dict):
    """The (model, tokenizer) of this worker, loaded or built once per fingerprint, on the trial's device
    (``settings.device``; ``model.device`` tells where, ``decode_pass`` moves the batches there).

    Raises:
        SpecError: ``settings.device`` is cuda where there is no GPU for the trial.
    """
    from search.models import build_model

    device = Compute.from_settings(settings).device
    key = (model_fingerprint(model_spec, settings["seed"]), str(device))
    if key not in _MODELS:

        def train_texts() -> list[str]:
            from search.corpora import load_pairs

            pairs = load_pairs(data, "train", settings["spec_file"], limit=settings["train_size"])
            return pairs.sources + pairs.references

        torch.manual_seed(settings["seed"])
        model, tokenizer = build_model(model_spec, train_texts, cache_dir=settings["cache_dir"])
        model.to(device).eval()
        _MODELS[key] = (model, tokenizer)
    return _MODELS[key]


COST_KEYS = ("decoder_steps", "beam_steps", "est_seconds")  # a config's own cost, in each entry decoded since


def _beams_kept(model, args: dict) -> int:
    """Decoder rows per input sentence: ``num_beams`` for beam search, else ``num_return_sequences`` (sampling)."""
    gen = model.generation_config
    beams = args.get("num_beams", gen.num_beams) or 1
    return beams if beams > 1 else args.get("num_return_sequences", gen.num_return_sequences) or 1


def decode_pass(
    model, tokenizer, batches, configs: list[dict], shared: dict, seed: int, precision: str = "fp32", records=None
) -> tuple[list[dict], float]:
    """Decode every batch with every config (one beam pass per batch); return each config's entry and the seconds.

    The batches (on the CPU) are moved to ``model.device``; generate() and the replay run under ``precision``'s
    autocast (``settings.precision``); ``records`` (``beam.PassRecords``) records the beam passes, or replays them
    without the model. Each entry records the precision and device it was decoded with, and the
    config's own cost (:data:`COST_KEYS`), summed over the batches: ``decoder_steps``, the decoder steps
    ``generate()`` with this config alone runs (a beam config: the step its search stops at, replayed exactly, also
    from a record; a shared pass runs until its last config stops, so its own length is no measure of one config);
    ``beam_steps``, those steps x the beams kept (``num_beams``; sampling: ``num_return_sequences``), the work of the
    config alone; and ``est_seconds``, an estimate of its time alone: per batch, the seconds of the model run that
    served it (a replayed config: of the recorded pass) x its share of that run's steps. On batched hardware wider
    beams cost less than that per beam, so compare configs by ``beam_steps``.
    """
    compute = Compute(model.device, PRECISIONS[precision])
    n = sum(len(chunk) for chunk, _ in batches)
    hypotheses = [[""] * n for _ in configs]
    lengths = [[0] * n for _ in configs]
    steps, estimates = [0] * len(configs), [0.0] * len(configs)
    widths = [_beams_kept(model, {**shared, **config}) for config in configs]
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    torch.manual_seed(seed)  # sampling configs are reproducible (seeds the CPU's and every GPU's generator)
    start = time.perf_counter()
    for chunk, inputs in batches:
        with compute.autocast():
            outs = decode_configs(model, compute.to_device(inputs), configs, shared, records)
        for c, out in enumerate(outs):
            steps[c] += out.own_steps
            estimates[c] += out.seconds * out.own_steps / max(out.steps, 1)
            per_input = out.sequences.shape[0] // len(chunk)
            top = out.sequences[::per_input].cpu()  # the best of each input's num_return_sequences
            texts = tokenizer.batch_decode(top, skip_special_tokens=True)
            counts = (~torch.isin(top, special)).sum(dim=1).tolist()
            for i, text, count in zip(chunk, texts, counts, strict=True):
                hypotheses[c][i], lengths[c][i] = text.strip(), count
    seconds = time.perf_counter() - start
    done = {"seconds": seconds, "configs": len(configs), "precision": precision, "device": str(compute.device)}
    entries = [
        {"hypotheses": h, "output_tokens": k, **done, "decoder_steps": s, "beam_steps": s * width, "est_seconds": e}
        for h, k, s, width, e in zip(hypotheses, lengths, steps, widths, estimates, strict=True)
    ]
    return entries, seconds


def run(config: dict) -> dict:
    """Decode and score one config (reusing a shared pass when one exists); return the metrics."""
    return decode_and_score(config)[0]


def _pass_cache(config: dict, settings: dict, sources: list[str], pass_key: tuple) -> DecodeCache:
    """The cache of one beam pass: keyed by everything the pass depends on."""
    key = {
        "model": model_fingerprint(config["model"], settings["seed"]), "sources": sources,
        "batch_size": settings["batch_size"], "max_source_length": settings["max_source_length"],
        "seed": settings["seed"], "pass": pass_key,
        "precision": settings["precision"],  # autocast changes the scores; the device only by float noise: not in it
    }  # fmt: skip
    return DecodeCache(settings["cache_dir"], digest(key))


def _pass_members(model, settings: dict, args: dict, shared: dict, pass_key: tuple, own: str) -> dict[str, dict]:
    """``{config key: generate() arguments}`` decoded together with ``args`` (key ``own``, first) when a trial
    decodes its pass: the plan's configs that share the pass."""
    members = {own: args}
    for other in planned_configs(settings["decode_plan"], args):
        other_args = generation_args({**args, **other})
        other_pass, other_canon = canonical(model, other_args, shared)
        if other_pass == pass_key:
            members.setdefault(digest(other_canon), other_args)
    return members


def _decoded(config: dict, settings: dict, pairs, args: dict, shared: dict) -> tuple[dict, dict, bool, bool]:
    """``(cache entry, canonical config, from_cache, replayed)`` of ``args``: from this machine's cache, replayed from
    a record of its beam pass (this machine's, or one another trial put on the pass board), from another trial
    through the board (or the cache's lock without one), or decoded here with the planned configs of its pass that
    are not on this machine yet; ``from_cache`` is False exactly in that last case, ``replayed`` True when the entry
    was replayed here from a record (no model run)."""
    model, tokenizer = load(config["model"], settings, config["data"])
    pass_key, canon = canonical(model, args, shared)
    cache, own = _pass_cache(config, settings, pairs.sources, pass_key), digest(canon)
    entry = cache.get(own)
    if entry is not None:
        return entry, canon, True, False
    batches = source_batches(tokenizer, pairs.sources, settings["batch_size"], settings["max_source_length"])
    run = (model, tokenizer, batches)

    def replayed(stored: dict | None) -> dict | None:
        """``own`` replayed from ``stored`` records (and kept in the cache), or None when they do not cover it."""
        if stored is None or pass_key[0] != "beam":
            return None
        try:
            (decoded,), _ = decode_pass(*run, [args], shared, settings["seed"], settings["precision"],
                                        PassRecords(stored, replay_only=True))  # fmt: skip
        except NotCovered:
            return None
        cache.put(own, decoded)
        return decoded

    entry = replayed(cache.get_record())
    if entry is not None:
        return entry, canon, True, True
    members = _pass_members(model, settings, args, shared, pass_key, own)
    compute = _pass_compute(run, cache, members, own, settings, shared, horizon(settings["decode_plan"], args))
    board = open_board(settings["pass_board"])
    if board is None:
        with cache.locked():
            entry = cache.get(own)  # another trial may have computed it while we waited
            if entry is not None:
                return entry, canon, True, False
            entry = replayed(cache.get_record())
            if entry is not None:
                return entry, canon, True, True
            return compute(list(members))[own], canon, False, False
    if pass_key[0] == "beam" and settings["decode_plan"].get("continuous"):
        # Configs are not known ahead: claim the pass's record first; whoever makes it decodes this config with it.
        record, computed = share(board, cache.pass_key, RECORD, [RECORD, *members], compute)
        entry = cache.get(own) if computed else replayed(record)
        if entry is not None:
            return entry, canon, not computed, not computed
    # A grid's config, decoded with the planned configs of its pass; or one the record does not cover, alone.
    entry, computed = share(board, cache.pass_key, own, list(members), compute)
    if not computed:
        cache.put(own, entry)  # for later runs on this machine
    return entry, canon, not computed, False


def _pass_compute(run: tuple, cache: DecodeCache, members: dict, own: str, settings: dict, shared: dict,
                  reach: tuple[list[dict], bool]):  # fmt: skip
    """``compute(keys)`` for :func:`search.decoding.share`: the entries of a lease's ``keys``, ``own`` decoded, the
    others read from this machine's cache or decoded with it, and the pass's record (key ``RECORD``), made while
    decoding and run until ``reach`` (``configs.horizon``) is covered too; all kept in the cache."""

    def compute(keys: list[str]) -> dict[str, dict]:
        kept = {k: hit for k in keys if k not in (own, RECORD) and (hit := cache.get(k)) is not None}
        todo = {k: members[k] for k in keys if k not in kept and k != RECORD}
        records = PassRecords(horizon=reach[0], to_end=reach[1])
        entries, _ = decode_pass(*run, list(todo.values()), shared, settings["seed"], settings["precision"], records)
        for key, decoded in zip(todo, entries, strict=True):
            cache.put(key, decoded)
        stored = records.stored()
        cache.put_record(stored)
        return {**kept, **dict(zip(todo, entries, strict=True)), RECORD: stored}

    return compute


def decode_and_score(config: dict) -> tuple[dict, list[str], list[str], dict]:
    """``(metrics, hypotheses, references, generate() arguments)`` of one config (``decode`` names the metrics)."""
    from search.corpora import load_pairs

    settings = resolve_settings(config)
    # A URI is fetched into this node's cache, a Hub id resolved to its snapshot: the fingerprint hashes the files.
    config = {**config, "model": local_model(config["model"], settings["cache_dir"], settings["spec_file"])}
    pairs = load_pairs(config["data"], settings["split"], settings["spec_file"], limit=settings["limit"])
    shared, args = shared_args(settings), generation_args(config)
    entry, canon, from_cache, replayed = _decoded(config, settings, pairs, args, shared)
    metrics = {
        **corpus_scores(entry["hypotheses"], pairs.references, settings["metrics"]),
        "sentences_per_s": len(pairs) / max(entry["seconds"], 1e-9),  # of the pass that decoded this config
        "mean_output_len": sum(entry["output_tokens"]) / max(1, len(pairs)),
        "identical_to": config_label(canon) if canon != args else "",
        "pass_configs": entry["configs"],
        "from_cache": from_cache,
        "replayed": replayed,  # replayed here from a record of its beam pass, without running the model
        "sentences": len(pairs),
        **{key: entry[key] for key in COST_KEYS if key in entry},  # not in entries cached before costs were
    }
    return metrics, entry["hypotheses"], list(pairs.references), {**shared, **args}


def decode(config: dict) -> None:
    """Ray Tune trainable: decode ``settings.split`` of ``data`` with this config's ``generate()`` arguments.

    Reports each metric of ``settings.metrics`` and its signature (``bleu, bleu_signature, chrf, chrf_signature`` by
    default; the sweep's metric always), and ``sentences_per_s, mean_output_len, identical_to,
    pass_configs, from_cache, replayed, sentences`` and the config's own cost ``decoder_steps, beam_steps, est_seconds``
    (:func:`decode_pass`). ``sentences_per_s`` is the throughput of the pass that decoded the config
    (shared by the ``pass_configs`` configs it served); ``identical_to`` names the canonical config when this one is
    a duplicate of it (e.g. ``num_beams=1`` with any ``length_penalty``), else "". Outside Tune it prints them.

    Example:
        >>> decode({"model": "runs/model", "data": {"corpus": "bible-en-es"}, "num_beams": 4, "length_penalty": 0.8,
        ...         "settings": {"limit": 100}})  # doctest: +SKIP
    """
    use_trial_cpus()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # generate() warns about inert flags (lp with num_beams=1) on every call
    metrics, hypotheses, references, args = decode_and_score(config)
    from ray import tune

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_tune = tune.get_context().get_trial_id() is not None
    if in_tune:
        # In its trial directory (Tune's working directory): for the paired bootstrap, and for export.
        write_translations(Path.cwd(), hypotheses, references)
        write_generate_args(Path.cwd(), args)
        tune.report(metrics)
    else:
        print({k: v for k, v in metrics.items() if not k.endswith("_signature")}, flush=True)
