"""Data from Hugging Face ``datasets``: a Hub dataset or one saved with ``save_to_disk``::

    data: {hub: wmt19, config: de-en, pair: de-en}                      # the `translation` column: {de: ..., en: ...}
    data: {hub: org/name, split: {dev: validation}, source_field: en, target_field: es, revision: main}
    data: {disk: saved/, source_field: src, target_field: tgt}

``hub`` goes through ``datasets.load_dataset(hub, config, split=..., revision=...)``: offline
(``HF_DATASETS_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) it reads the prepared copy in its cache (``HF_DATASETS_CACHE``,
else ``HF_HOME/datasets``) that an earlier online load left there. ``disk`` goes through ``datasets.load_from_disk``:
a saved ``DatasetDict`` has splits, a saved ``Dataset`` serves every split.

Our splits map to the dataset's as the Hub names them: ``train`` -> ``train``, ``dev`` -> ``validation``, ``test`` ->
``test``; ``split: NAME`` makes one split serve all of ours, ``split: {dev: newstest2019}`` renames some. The fields
are ``source_field``/``target_field`` (default ``source``/``target``), or ``pair: SRC-TGT`` for a ``translation``
column of ``{language: text}`` mappings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from search.corpora.pairs import SPLITS, Pairs, checked
from search.errors import DataError

HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # the names Hub datasets use
COMMON_KEYS = {"split", "source_field", "target_field", "pair"}
HUB_KEYS = {"hub", "config", "revision", *COMMON_KEYS}
DISK_KEYS = {"disk", *COMMON_KEYS}
TRANSLATION = "translation"  # the column of {language: text} mappings in WMT-style datasets


def _quiet() -> None:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("datasets").setLevel(logging.ERROR)


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def _require_str(data: dict, key: str, file: str) -> None:
    if key in data and (not isinstance(data[key], str) or not data[key]):
        raise DataError(file, f"data.{key}", f"must be a non-empty string, got {data[key]!r}")


def check_common(data: dict, file: str) -> None:
    """The split mapping and the field keys shared by ``hub`` and ``disk``."""
    split = data.get("split")
    if isinstance(split, dict):
        for ours, theirs in split.items():
            if ours not in SPLITS:
                raise DataError(file, f"data.split.{ours}", f"unknown split; valid: {', '.join(SPLITS)}")
            if not isinstance(theirs, str) or not theirs:
                raise DataError(file, f"data.split.{ours}", f"must be the dataset's split name, got {theirs!r}")
    elif split is not None:
        _require_str(data, "split", file)
    for key in ("source_field", "target_field", "pair"):
        _require_str(data, key, file)
    if "pair" in data:
        fields = sorted({"source_field", "target_field"} & set(data))
        if fields:
            raise DataError(file, f"data.{fields[0]}", "not allowed with data.pair, which reads the translation column")
        if len(data["pair"].split("-")) != 2 or not all(data["pair"].split("-")):
            raise DataError(file, "data.pair", f"must be SOURCE-TARGET language codes like de-en, got {data['pair']!r}")


def split_name(data: dict, split: str) -> str:
    """The dataset's name of our ``split``."""
    chosen = data.get("split")
    if isinstance(chosen, str):
        return chosen
    return (chosen or {}).get(split, HUB_SPLITS[split])


def pairs_of(table: Any, data: dict, file: str, label: str) -> Pairs:
    """The pairs of a ``datasets.Dataset``, from its two fields or its translation column."""
    columns = table.column_names
    if "pair" in data:
        source, target = data["pair"].split("-")
        if TRANSLATION not in columns:
            raise DataError(file, "data.pair", f"{label} has no {TRANSLATION!r} column; its columns: "
                            f"{', '.join(columns)}; use data.source_field/target_field")  # fmt: skip
        rows = table[TRANSLATION]
        offered = sorted(rows[0]) if rows else []
        for language in (source, target):
            if rows and language not in rows[0]:
                raise DataError(file, "data.pair", f"{label} has no language {language!r}; it has {', '.join(offered)}")
        sources, references = [r[source] for r in rows], [r[target] for r in rows]
    else:
        fields = data.get("source_field", "source"), data.get("target_field", "target")
        for which, field in zip(("source_field", "target_field"), fields, strict=True):
            if field not in columns:
                message = f"{label} has no field {field!r}; its fields are: {', '.join(columns)}; set data.{which}"
                raise DataError(file, f"data.{which}", message)
        sources, references = table[fields[0]], table[fields[1]]
    return checked(sources, references, label, file, "data", label, label)


def _unknown_split(data: dict, split: str, name: str, offered: list[str], file: str, label: str) -> DataError:
    return DataError(
        file,
        "data.split",
        f"{label} has no split {name!r} for our {split}; its splits: {', '.join(offered)}; "
        f"set data.split: {{{split}: NAME}}",
    )


class HubSource:
    """``{hub: NAME, config, revision, split, fields}`` through ``datasets.load_dataset``."""

    key = "hub"
    keys = HUB_KEYS

    def validate(self, data: dict, file: str) -> None:
        """Keys, then the dataset and config resolve (from the cache when offline) without reading the data."""
        import datasets

        for key in ("hub", "config", "revision"):
            _require_str(data, key, file)
        check_common(data, file)
        _quiet()
        try:
            datasets.load_dataset_builder(data["hub"], data.get("config"), revision=data.get("revision"))
        except Exception as error:  # noqa: BLE001 - not found, not cached, unknown config: the message says which
            raise DataError(
                file, "data.hub", f"{data['hub']!r} does not load ({_one_line(error)}); {self._fix()}"
            ) from None

    def load(self, data: dict, split: str, file: str) -> Pairs:
        import datasets

        name, label = split_name(data, split), data["hub"]
        _quiet()
        try:
            table = datasets.load_dataset(data["hub"], data.get("config"), split=name, revision=data.get("revision"))
        except ValueError as error:
            if "Unknown split" not in str(error):
                raise DataError(file, "data.hub", f"{label}: {_one_line(error)}; {self._fix()}") from None
            builder = datasets.load_dataset_builder(data["hub"], data.get("config"), revision=data.get("revision"))
            raise _unknown_split(data, split, name, list(builder.info.splits or ()), file, label) from None
        except Exception as error:  # noqa: BLE001 - one line for whatever the loader raises
            raise DataError(file, "data.hub", f"{label}: {_one_line(error)}; {self._fix()}") from None
        return pairs_of(table, data, file, f"{label}/{name}")

    @staticmethod
    def _fix() -> str:
        from datasets import config

        return (
            "check the name and config; offline it must be in the datasets cache "
            f"HF_DATASETS_CACHE={config.HF_DATASETS_CACHE}: load it once where there is internet and copy that cache"
        )


class DiskSource:
    """``{disk: PATH, split, fields}`` through ``datasets.load_from_disk``."""

    key = "disk"
    keys = DISK_KEYS

    def validate(self, data: dict, file: str) -> None:
        _require_str(data, "disk", file)
        check_common(data, file)
        path = Path(data["disk"])
        if not any((path / marker).is_file() for marker in ("dataset_dict.json", "state.json")):
            what = "no such directory" if not path.is_dir() else "no dataset_dict.json or state.json"
            raise DataError(file, "data.disk", f"{path}: {what}; give a directory written by save_to_disk")

    def load(self, data: dict, split: str, file: str) -> Pairs:
        import datasets

        _quiet()
        path = Path(data["disk"])
        try:
            saved = datasets.load_from_disk(str(path))
        except Exception as error:  # noqa: BLE001 - a damaged or foreign directory
            raise DataError(file, "data.disk", f"{path}: does not load ({_one_line(error)}); save it again") from None
        if isinstance(saved, datasets.Dataset):
            if "split" in data:
                raise DataError(file, "data.split", f"{path} holds one Dataset, which serves every split; remove it")
            return pairs_of(saved, data, file, path.name)
        name = split_name(data, split)
        if name not in saved:
            raise _unknown_split(data, split, name, list(saved), file, str(path))
        return pairs_of(saved[name], data, file, f"{path.name}/{name}")


__all__ = ["HUB_SPLITS", "DiskSource", "HubSource", "check_common", "pairs_of", "split_name"]
