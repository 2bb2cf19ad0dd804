"""The model card (``README.md``) as the Hugging Face Hub reads it: YAML front matter (``language``, ``tags``,
``datasets``, ``metrics``, ``base_model``, ``model-index``) written with ``huggingface_hub.ModelCard``, and a section
per sweep between ``<!-- search:KEY -->`` markers.

A section holds the ranked table, the metric's signature, the data and the sweep that produced the exported model;
its scores go into the ``model-index``, named after the section (``bleu (decoding sweep)``). Writing a card into an
existing one replaces that section and its scores and merges the front matter (lists are joined, what the user wrote
is kept), so nothing is duplicated.

The export never writes a ``license``: the model's license is its author's choice (a fine-tuned model's follows its
base model's), even when the training data is in the public domain, as the shipped corpora are (the card says so).
A ``license`` already in the card is kept.

Paths are named relative to the project (:func:`search.export.values.portable_path`), never as absolute paths of the
machine that ran the sweep.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from search.errors import UserError
from search.export.values import portable_path, yaml_safe
from search.report import Ranking, Row, format_ranking
from search.rundir import read_history
from search.spec import Spec
from search.storage import is_uri

CARD_FILE = "README.md"
CARD_ROWS = 10  # rows of the ranked table in the model card
SEARCH_TAGS = ("ray-tune", "generated_from_search")  # as transformers' Trainer tags its cards generated_from_trainer
LABELS = {"finetune": "fine-tuning sweep", "decode": "decoding sweep"}  # a section's name in its model-index scores
# The shipped corpora (search.corpora.CORPORA): their languages and where the text comes from.
CORPUS_LANGUAGES = {"bible-en-es": ["en", "es"], "bible-kjv-web": ["en"], "bible-lead": ["en"]}
CORPUS_SOURCES = {
    "bible-en-es": "World English Bible -> Reina-Valera 1909, both in the public domain",
    "bible-kjv-web": "King James Version -> World English Bible, both in the public domain",
    "bible-lead": "World English Bible passages -> their first verse, in the public domain",
}
# Our metric names -> the Hub's metric ids (https://hf.co/metrics); the tasks they score.
HUB_METRICS = {"bleu": "bleu", "chrf": "chrf", "chrfpp": "chrf", "ter": "ter"}
ROUGE = "rouge"  # rouge1, rouge2, rougeL, rougeLsum: the Hub's rouge; they score summaries
# search.corpora's keys that name no path (the others, e.g. dev or disk, are shown relative to the project)
DATA_NON_PATH_KEYS = (
    "corpus", "format", "source_field", "target_field", "hub", "config", "revision", "split", "pair", "sacrebleu",
    "langpair",
)  # fmt: skip


def hub_metric(name: str) -> str | None:
    """The Hub's id of one of our metrics (``chrfpp`` -> ``chrf``, ``rougeL`` -> ``rouge``), or None."""
    return ROUGE if name.startswith(ROUGE) else HUB_METRICS.get(name)


def hub_model_id(model: Any, spec: Spec) -> str | None:
    """``model`` as a Hub repo id (``org/name``; a ``@revision`` dropped) when it names one: a string that is no
    URI, no local directory and no path such as ``./m`` or ``/m``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(model, str) or is_uri(model) or model.startswith((".", "~", "/")):
        return None
    repo_id = model.partition("@")[0]
    if repo_id.count("/") != 1 or (spec.base_dir / model).exists():
        return None
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    return repo_id


@dataclass(frozen=True)
class CardSection:
    """One sweep's part of the card: its Markdown, its winner's scores (``EvalResult`` arguments without
    ``metric_name``, which names the section when written) and the front matter it brings."""

    text: str
    scores: tuple[dict[str, Any], ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """The data as the card names it."""

    id: str  # a Hub dataset id, a shipped corpus's name, or the dev file's path in the project
    name: str  # a pretty name
    description: str  # one line
    config: str | None = None  # a Hub dataset's config, a sacreBLEU set's language pair


def dataset(spec: Spec) -> Dataset:
    """The spec's data (``search.corpora``'s forms) as the card and its model-index name it."""
    data = dict(yaml_safe(dict(spec.data)))
    shown = {k: v if k in DATA_NON_PATH_KEYS else _portable(v, spec.file) for k, v in data.items()}
    line = yaml.safe_dump(shown, default_flow_style=True, width=10**6).strip()
    if "corpus" in data:
        corpus, source = str(data["corpus"]), CORPUS_SOURCES.get(str(data["corpus"]))
        return Dataset(corpus, f"{corpus}: {source}" if source else corpus, f"corpus {corpus}: {source or '-'}")
    for key in ("hub", "sacrebleu"):
        if key in data:
            config = data.get("config", data.get("langpair"))
            return Dataset(str(data[key]), " ".join(str(v) for v in (data[key], config) if v), line, config)
    if "disk" in shown:
        return Dataset(str(shown["disk"]), str(shown["disk"]), line)
    entry = shown.get(str(spec.settings.get("split", "dev")), shown)
    name = str(entry.get("reference", "-") if isinstance(entry, dict) else entry)
    return Dataset(name, name, line)


def _portable(value: Any, spec_file: str) -> Any:
    if isinstance(value, dict):
        return {k: _portable(v, spec_file) for k, v in value.items()}
    return portable_path(value, spec_file) if isinstance(value, str) else value


def _iso(code: Any) -> bool:
    return isinstance(code, str) and len(code) == 2 and code.isalpha() and code.islower()


def _languages(data: Mapping[str, Any]) -> list[str] | None:
    """The data's languages when known: a shipped corpus's, a language pair's (``pair``, ``langpair`` or a Hub
    config such as ``de-en``), or table fields named by ISO 639-1 codes (``source_field: en``)."""
    if "corpus" in data:
        return CORPUS_LANGUAGES.get(str(data["corpus"]))
    for key in ("pair", "langpair", "config"):
        codes = str(data.get(key) or "").split("-")
        if len(codes) == 2 and all(map(_iso, codes)):
            return list(dict.fromkeys(codes))
    fields = [data.get("source_field"), data.get("target_field")]
    return list(dict.fromkeys(fields)) if all(map(_iso, fields)) else None


def _signatures(row: Row) -> dict[str, str]:
    """``{metric: signature}`` of the trial's last report (``<metric>_signature`` fields)."""
    history = read_history(Path(row.path)) if row.path else []
    last = history[-1] if history else {}
    return {k.removesuffix("_signature"): str(v) for k, v in last.items() if k.endswith("_signature") and v}


def _scores(ranking: Ranking, winner: Row, task: str, data: Dataset, split: str) -> tuple[dict, ...]:
    """The winner's metric and its extra columns that the Hub knows as metrics, with their signatures."""
    signatures = _signatures(winner)
    if ranking.signature:
        signatures[ranking.metric] = ranking.signature
    values = {ranking.metric: winner.value}
    values.update({c: v for c, v in winner.columns.items() if hub_metric(c) and c != ranking.metric})
    scores = []
    for metric, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            continue
        score = {
            "task_type": task, "dataset_type": data.id, "dataset_name": data.name, "dataset_config": data.config,
            "dataset_split": split, "metric_type": metric, "metric_value": float(value),
        }  # fmt: skip
        if metric in signatures:
            score["metric_args"] = {"signature": signatures[metric]}
        scores.append(score)
    return tuple(scores)


def card_section(
    ranking: Ranking,
    spec: Spec,
    title: str,
    rows: int = CARD_ROWS,
    *,
    winner: Row | None = None,
    notes: tuple[str, ...] = (),
) -> CardSection:
    """A model-card section: the ranked table (Markdown), the metric's signature and the data used; the scores of
    ``winner`` (default: the best row) for the ``model-index``, and the front matter the sweep tells.

    Args:
        ranking: the sweep's ranking.
        spec: the sweep's spec (its data, model and file).
        title: the section's heading.
        rows: rows of the ranked table shown.
        winner: the exported trial, when it is not the best one (``search export --trial``, ``fastest-tied``).
        notes: lines on which trial was exported and why, listed under the table.
    """
    shown = [replace(r, error=None) for r in ranking.rows[:rows]]  # error lines may name paths of the machine
    table = format_ranking(replace(ranking, rows=tuple(shown)), "md")
    data = dataset(spec) if spec.data else Dataset("-", "-", "-")
    settings = {k: v for k, v in spec.settings.items() if k in ("eval_size", "train_size", "max_steps", "limit")}
    lines = [f"## {title}", "", table, "", *(f"- {note.strip()}" for note in notes), f"- Data: `{data.description}`"]
    if settings:
        lines.append(f"- Settings: `{json.dumps(yaml_safe(settings))}`")
    if ranking.signature:
        lines.append(f"- {ranking.metric} signature: `{ranking.signature}`")
    sweep_file = portable_path(spec.file, spec.file)
    lines.append(f"- Sweep: `{spec.name}` ({spec.method}, scheduler {spec.scheduler.type}), from `{sweep_file}`")
    names = [ranking.metric, *ranking.columns]
    task = "summarization" if any(hub_metric(n) == ROUGE for n in names) else "translation"
    winner = winner or ranking.best
    split = str(spec.settings.get("split", "dev"))
    found = winner is not None and spec.data
    scores = _scores(ranking, winner, task, data, split) if found else ()
    metadata = {
        "language": _languages(spec.data), "datasets": [data.id] if {"corpus", "hub"} & set(spec.data) else None,
        "metrics": list(dict.fromkeys(m for m in map(hub_metric, names) if m)) or None,
        "base_model": hub_model_id(spec.model, spec), "tags": [task, *SEARCH_TAGS], "pipeline_tag": task,
        "library_name": "transformers",
    }  # fmt: skip
    return CardSection("\n".join(lines) + "\n", scores, {k: v for k, v in metadata.items() if v})


def card_with_section(old: str, key: str, section: str) -> str:
    """``old`` (a README's Markdown) with the section between ``<!-- search:KEY -->`` markers replaced or appended."""
    begin, end = f"<!-- search:{key} -->", f"<!-- /search:{key} -->"
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    if begin in old and end in old:
        head, _, rest = old.partition(begin)
        return head + block + rest.partition(end)[2].lstrip("\n")
    return (old.rstrip() + "\n\n" if old.strip() else "") + block


def _merge(data: Any, metadata: Mapping[str, Any]) -> None:
    """Merge a section's front matter into the card's: lists joined in order, a value the card lacks added."""
    for key, value in metadata.items():
        old = data.get(key)
        if isinstance(value, list):
            old_list = old if isinstance(old, list) else [old] if old else []
            data[key] = list(dict.fromkeys([*old_list, *value]))
        elif old is None:
            data[key] = value


def write_card(old: str, sections: Mapping[str, CardSection], model_name: str, file: str = CARD_FILE) -> str:
    """The card ``old`` (a README, maybe empty or without front matter) with ``sections`` written in: each section's
    Markdown replaced or appended, its scores replacing the ones it wrote before, its front matter merged.

    Raises:
        UserError: ``old`` has front matter that is not a YAML mapping or whose model-index cannot be read.
    """
    from huggingface_hub import EvalResult, ModelCard

    if not old.lstrip().startswith("---"):
        old = "---\n{}\n---\n" + old  # an empty front matter: huggingface_hub warns about a missing one
    try:
        card = ModelCard(old)
    except (ValueError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(
            f"{file}: its front matter cannot be read ({first}); fix or remove it, then export again"
        ) from None
    labels = {key: LABELS.get(key, key) for key in sections}
    owned = tuple(f" ({label})" for label in labels.values())
    results = [r for r in card.data.eval_results or [] if not (r.metric_name or "").endswith(owned)]
    text = card.text.lstrip("\n")
    for key, section in sections.items():
        text = card_with_section(text, key, section.text)
        _merge(card.data, section.metadata)
        results += [EvalResult(**s, metric_name=f"{s['metric_type']} ({labels[key]})") for s in section.scores]
    if results:  # the model-index names the model; without scores there is no model-index
        card.data.model_name = card.data.model_name or model_name
    card.data.eval_results = results or None
    card.text = "\n" + text
    return str(card)


__all__ = ["CARD_FILE", "CardSection", "card_section", "card_with_section", "hub_metric", "hub_model_id", "write_card"]
