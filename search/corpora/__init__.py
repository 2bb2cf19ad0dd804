"""The (source, reference) pairs of a split, from one of these data sources (``data:`` in a spec):

- a shipped corpus, with splits ``train``, ``dev`` and ``test``: ``{corpus: bible-en-es}``;
- the user's files, tables or plain text (``search.corpora.files``):
  ``{train: train.tsv, dev: dev.tsv, source_field: en, target_field: es}``, ``{dev: {source: dev.en, reference:
  dev.es}}``, ``{source: dev.en, reference: dev.es}``;
- a Hugging Face Hub dataset or one saved with ``save_to_disk`` (``search.corpora.hub_datasets``):
  ``{hub: wmt19, config: de-en, pair: de-en}``, ``{disk: saved/, source_field: src, target_field: tgt}``;
- a sacreBLEU test set, serving ``dev`` and ``test`` (``search.corpora.sacrebleu_sets``):
  ``{sacrebleu: wmt19, langpair: ru-en}``.

The key present chooses the source (``SOURCES``); files are the default. Nothing downloads when the data is cached.

Example:
    >>> pairs = load_pairs({"corpus": "bible-en-es"}, "dev", limit=2)
    >>> len(pairs), pairs.name
    (2, 'bible-en-es/dev')
"""

from __future__ import annotations

from typing import Protocol

from search.corpora.files import CORPORA, FORMATS, FilesSource
from search.corpora.hub_datasets import DiskSource, HubSource
from search.corpora.pairs import SPLITS, Pairs
from search.corpora.sacrebleu_sets import SacrebleuSource
from search.errors import DataError


class Source(Protocol):
    """A kind of data: the keys it takes, a check that loads nothing it need not, and a loader of one split."""

    key: str | None
    keys: set[str]

    def validate(self, data: dict, file: str) -> None: ...

    def load(self, data: dict, split: str, file: str) -> Pairs: ...


# Chosen by the key present in ``data``; files (and shipped corpora) when none is.
SOURCES: dict[str, Source] = {"hub": HubSource(), "disk": DiskSource(), "sacrebleu": SacrebleuSource()}
FILES: Source = FilesSource()


def source_of(data: dict, file: str = "<spec>") -> Source:
    """The source a ``data`` section names, its keys checked (two sources' keys at once is an error)."""
    if not isinstance(data, dict) or not data:
        raise DataError(file, "data", f"must be a mapping like {{corpus: bible-en-es}}, got {data!r}")
    named = [key for key in SOURCES if key in data]
    if len(named) > 1:
        raise DataError(file, f"data.{named[1]}", f"not allowed with data.{named[0]}; give one data source")
    source = SOURCES[named[0]] if named else FILES
    unknown = sorted(set(data) - source.keys)
    if unknown:
        valid = f"unknown key; valid keys: {', '.join(sorted(source.keys))}"
        other = [key for key, s in SOURCES.items() if unknown[0] in s.keys and key not in data]
        hint = f" (or data.{other[0]}, which takes {unknown[0]})" if other else ""
        raise DataError(file, f"data.{unknown[0]}", valid + hint)
    return source


def validate_data(data: dict, file: str = "<spec>") -> None:
    """Check a ``data`` section without loading its data: keys, names, files, caches.

    Raises:
        DataError: one line naming ``file``, the key ``data.<key>``, the rule, the bad value and the fix.
    """
    source_of(data, file).validate(data, file)


def load_pairs(data: dict, split: str, file: str = "<spec>", limit: int | None = None) -> Pairs:
    """The (source, reference) pairs of ``split`` (``train``, ``dev`` or ``test``) of a ``data`` section.

    Args:
        data: the spec's ``data`` mapping (see the module docstring for its forms).
        split: which split to load.
        file: spec file name used in error messages.
        limit: keep only the first ``limit`` pairs.

    Raises:
        DataError: bad section or bad data (missing file, field or split, empty split, unequal line counts, bytes
            that are not UTF-8, a dataset not in its cache), in one line naming the data and the fix.
    """
    source = source_of(data, file)
    source.validate(data, file)
    if split not in SPLITS:
        raise DataError(file, "split", f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    pairs = source.load(data, split, file)
    if limit is not None:
        pairs = Pairs(pairs.sources[:limit], pairs.references[:limit], pairs.name)
    return pairs


__all__ = ["CORPORA", "FORMATS", "SOURCES", "SPLITS", "Pairs", "Source", "load_pairs", "source_of", "validate_data"]
