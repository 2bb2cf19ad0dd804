"""Data from files: a shipped corpus, table files read with ``datasets`` (offline), plain line-aligned text files.

The forms (``search.corpora`` lists every one)::

    data: {corpus: bible-en-es}
    data: {train: train.tsv, dev: dev.tsv, test: test.tsv, source_field: en, target_field: es, format: tsv}
    data: {dev: {source: dev.en, reference: dev.es}}
    data: {source: dev.en, reference: dev.es}

A table's ``format`` is ``tsv``, ``csv`` or ``jsonl``, inferred from the extension (``.tsv``, ``.csv``,
``.jsonl``/``.json``, each optionally ``.gz``) when absent; the fields default to ``source`` and ``target``; a split
that is not needed may be left out. Paths are used as given (the runner makes them absolute); files must be UTF-8.
"""

from __future__ import annotations

import csv
import gzip
import logging
import tempfile
from pathlib import Path

from search.corpora.pairs import SPLITS, Pairs, checked
from search.errors import DataError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CORPORA: dict[str, Path] = {
    "bible-en-es": DATA_DIR / "bible-en-es",  # World English Bible -> Reina-Valera 1909
    "bible-kjv-web": DATA_DIR / "bible-kjv-web",  # King James Version -> World English Bible
    "bible-lead": DATA_DIR / "bible-lead",  # WEB passage of 4 verses -> its first verse (summarization stand-in)
}
FORMATS = ("tsv", "csv", "jsonl")
_EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
_TABLE_KEYS = {"source_field", "target_field", "format"}
KEYS = {"corpus", "source", "reference", *SPLITS, *_TABLE_KEYS}


def validate(data: dict, file: str) -> None:
    """Check a ``data`` section of files without loading it: keys, corpus name, file existence, formats.

    Raises:
        DataError: one line naming ``file``, the key ``data.<key>``, the rule, the bad value and the fix.
    """
    if "corpus" in data:
        if len(data) > 1:
            other = sorted(set(data) - {"corpus"})[0]
            raise DataError(file, f"data.{other}", "not allowed with data.corpus; give a corpus or files, not both")
        if data["corpus"] not in CORPORA:
            raise DataError(file, "data.corpus", f"unknown corpus {data['corpus']!r}; valid: {', '.join(CORPORA)}")
        return
    if ("source" in data) != ("reference" in data):
        missing = "reference" if "source" in data else "source"
        raise DataError(file, f"data.{missing}", "missing; data.source and data.reference go together")
    if "source" in data:
        split = sorted(set(data) & set(SPLITS))
        if split:
            raise DataError(
                file,
                f"data.{split[0]}",
                "not allowed with data.source/data.reference, which serve "
                "every split; give per-split entries or one source/reference pair",
            )
        _check_plain(data, file, "data")
    splits = [s for s in SPLITS if s in data]
    if not splits and "source" not in data:
        raise DataError(file, "data", "no data given; add data.corpus, data.dev: PATH or data.source/data.reference")
    tables = [s for s in splits if not isinstance(data[s], dict)]
    for split in splits:
        if isinstance(data[split], dict):
            _check_plain(data[split], file, f"data.{split}")
        else:
            _table_format(data, split, file)
    if not tables:
        extra = sorted(set(data) & _TABLE_KEYS)
        if extra:
            raise DataError(file, f"data.{extra[0]}", "only applies to table files (tsv/csv/jsonl); remove it")


def load(data: dict, split: str, file: str) -> Pairs:
    """The pairs of ``split`` of a validated ``data`` section of files."""
    if "corpus" in data:
        pairs = _load_shipped(data["corpus"], split)
    elif "source" in data:
        pairs = _load_plain(data, file, "data")
    elif split not in data:
        raise DataError(file, f"data.{split}", f"split {split!r} is needed but not given; add data.{split}: PATH")
    elif isinstance(data[split], dict):
        pairs = _load_plain(data[split], file, f"data.{split}")
    else:
        pairs = _load_table(data, split, file)
    return pairs


def _check_plain(entry: dict, file: str, key: str) -> None:
    for name in ("source", "reference"):
        if name not in entry:
            raise DataError(file, f"{key}.{name}", "missing; plain text data needs {source: PATH, reference: PATH}")
        _check_exists(entry[name], file, f"{key}.{name}")
    unknown = sorted(set(entry) - {"source", "reference"})
    if key != "data" and unknown:
        raise DataError(file, f"{key}.{unknown[0]}", "unknown key; valid keys: source, reference")


def _check_exists(path: object, file: str, key: str) -> None:
    if not isinstance(path, str | Path) or not str(path):
        raise DataError(file, key, f"must be a file path, got {path!r}")
    if not Path(path).is_file():
        raise DataError(file, key, f"file not found: {path}; fix the path or create the file")


def _table_format(data: dict, split: str, file: str) -> str:
    path = data[split]
    _check_exists(path, file, f"data.{split}")
    if "format" in data:
        if data["format"] not in FORMATS:
            raise DataError(file, "data.format", f"unknown format {data['format']!r}; valid: {', '.join(FORMATS)}")
        return data["format"]
    suffixes = Path(path).suffixes
    suffix = suffixes[-2] if len(suffixes) > 1 and suffixes[-1] == ".gz" else Path(path).suffix
    if suffix.lower() not in _EXTENSIONS:
        raise DataError(
            file,
            f"data.{split}",
            f"cannot infer the format of {path} from its extension; set data.format to one of {', '.join(FORMATS)}",
        )
    return _EXTENSIONS[suffix.lower()]


def _read_text(path: str | Path, file: str, key: str) -> str:
    raw = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            file,
            key,
            f"{path}: line {line} is not UTF-8 ({raw[error.start : error.start + 4]!r}); re-save the file as UTF-8",
        ) from None


def _lines(path: str | Path, file: str, key: str) -> list[str]:
    text = _read_text(path, file, key)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _load_plain(entry: dict, file: str, key: str) -> Pairs:
    sources = _lines(entry["source"], file, f"{key}.source")
    references = _lines(entry["reference"], file, f"{key}.reference")
    if len(sources) != len(references):
        raise DataError(
            file,
            key,
            f"{entry['source']} has {len(sources)} lines but {entry['reference']} has "
            f"{len(references)}; the files must be line-aligned",
        )
    name = f"{Path(entry['source']).name}+{Path(entry['reference']).name}"
    return checked(sources, references, name, file, key, str(entry["source"]), str(entry["reference"]))


def _load_shipped(corpus: str, split: str) -> Pairs:
    path = CORPORA[corpus] / f"{split}.tsv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle][1:]  # header: ref source target
    return Pairs([r[1] for r in rows], [r[2] for r in rows], f"{corpus}/{split}")


def _load_table(data: dict, split: str, file: str) -> Pairs:
    import datasets

    path, fmt = data[split], _table_format(data, split, file)
    key = f"data.{split}"
    # Undecodable bytes and empty files get their own message before the CSV/JSON reader fails obscurely.
    rows = [line for line in _read_text(path, file, key).splitlines() if line.strip()]
    if len(rows) <= (0 if fmt == "jsonl" else 1):
        raise DataError(file, key, f"{path}: the split is empty; add rows")
    fields = data.get("source_field", "source"), data.get("target_field", "target")
    builder, options = ("json", {}) if fmt == "jsonl" else ("csv", {"na_filter": False})
    if fmt == "tsv":
        options.update(delimiter="\t", quoting=csv.QUOTE_NONE)
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="search-datasets-") as cache:
        try:
            table = datasets.load_dataset(
                builder, data_files={split: str(path)}, split=split, cache_dir=cache, **options
            )
        except Exception as error:  # noqa: BLE001 - any reader failure is the data's fault; report it in one line
            cause = error.__cause__ or error
            message = " ".join(str(cause).split())[:200]
            raise DataError(
                file,
                key,
                f"{path}: cannot be read as {fmt} ({type(cause).__name__}: {message}); fix the file or set data.format",
            ) from None
        for which, field in zip(("source_field", "target_field"), fields, strict=True):
            if field not in table.column_names:
                raise DataError(
                    file,
                    f"data.{which}",
                    f"{path} has no field {field!r}; its fields are: {', '.join(table.column_names)}; set data.{which}",
                )
        sources, references = table[fields[0]], table[fields[1]]
    return checked(sources, references, Path(path).name, file, key, str(path), str(path))


class FilesSource:
    """A shipped corpus or the user's files: this module's checks and loader as a data source."""

    key = None  # the default: chosen when no other source's key is present
    keys = KEYS
    validate = staticmethod(validate)
    load = staticmethod(load)


__all__ = ["CORPORA", "FORMATS", "KEYS", "FilesSource", "load", "validate"]
