"""Content-addressed store of decoded dev sets on one machine's disk, kept across runs under one ``cache_dir``.

Within a sweep the trials share passes through the sweep's pass board (``search.decoding.board``), which works
across nodes that share no disk; this store is what outlives the sweep: a trial reads it first (a later run on the
machine reuses every config decoded here), and writes what it decoded or got from the board. With a board, no lock
is taken (entries are written atomically, and the board says who decodes). Without one (``decode(config)`` called
outside a sweep, or a resumed sweep whose restored trials name the board of the interrupted run), the pass lock
coordinates the trials of one machine, as the only coordination there is.

Layout under ``<cache_dir>/decode/``::

    <pass key>.lock             without a board: held while one trial computes the pass; the others wait, then read
    <pass key>/<config key>.json  one decoded config: hypotheses, output lengths, pass seconds and size
    <pass key>/pass.record      the records of the pass over each batch (``beam.PassRecords``), from which configs
                                the pass ran long enough for are replayed without the model; merged across runs

A pass key hashes everything the beam pass depends on (model content, sources, split, batch size, truncation and the
shared ``generate()`` arguments with ``num_beams``); a config key adds the replayed arguments. Entries are written
to a temporary file and renamed, so a reader (or a resumed run after a crash) never sees a half-written entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search.files import atomic_write

# Bump when the entry format or the way hypotheses are produced changes, so old entries are not reused.
FORMAT = 1
_MODEL_HASHES: dict[str, str] = {}
# Bump when the stored form of a pass record (``beam.PassRecords.stored``) changes; other records are not read.
RECORD_FORMAT = 1


def digest(value: Any) -> str:
    """Stable short hash of a JSON-able value (keys sorted; ``repr`` for anything JSON cannot hold)."""
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(f"{FORMAT}:{text}".encode()).hexdigest()[:32]


def model_fingerprint(model: Any, seed: int) -> str:
    """Content hash of a model directory (every file, by name and bytes), or of a model mapping and its seed.

    Directory hashes are kept per process: a worker hashes each model once.
    """
    if isinstance(model, dict):
        return digest({"config": model, "seed": seed})
    path = str(Path(model).resolve())
    if path not in _MODEL_HASHES:
        sha = hashlib.sha256()
        for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            sha.update(str(file.relative_to(path)).encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023 - handle is bound per file
                    sha.update(block)
        _MODEL_HASHES[path] = sha.hexdigest()[:32]
    return _MODEL_HASHES[path]


class DecodeCache:
    """The entries of one beam pass (see the module docstring)."""

    def __init__(self, cache_dir: str | Path, pass_key: str):
        self.pass_key = pass_key
        self.root = Path(cache_dir) / "decode"
        self.dir = self.root / pass_key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock_path = str(self.root / f"{pass_key}.lock")
        self.record_path = self.dir / "pass.record"

    def path(self, config_key: str) -> Path:
        return self.dir / f"{config_key}.json"

    def get(self, config_key: str) -> dict | None:
        """The stored entry, or None when this config was never decoded with this pass."""
        try:
            return json.loads(self.path(config_key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def put(self, config_key: str, entry: dict) -> None:
        """Write an entry atomically (temporary file in the same directory, then rename)."""
        atomic_write(self.path(config_key), json.dumps(entry))

    def get_record(self) -> dict | None:
        """The pass's stored records (``beam.PassRecords.stored`` form), or None."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return record if record.get("format") == RECORD_FORMAT else None

    def put_record(self, record: dict) -> None:
        """Merge ``record`` into the stored records (per batch the longer one: see :func:`merge_records`).

        Two trials merging at once may lose one's batches (the last rename wins): records only save decoding,
        a lost one costs a decode later, never a wrong result.
        """
        atomic_write(self.record_path, json.dumps(merge_records(self.get_record(), record)))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pass lock: concurrent trials of one pass wait for the trial that computes it.

        ``filelock`` uses ``fcntl`` locks here, which the OS releases if the holder dies, so a crashed trial never
        leaves the pass locked.
        """
        from filelock import FileLock

        with FileLock(self.lock_path):
            yield


def merge_records(old: dict | None, new: dict | None) -> dict:
    """Two stored pass records as one: per batch the record that ran longer (a pass is deterministic for fixed
    batches, so the shorter record is a prefix of the longer one, and the longer covers every config it covers).

    Example:
        >>> a = {"format": RECORD_FORMAT, "batches": {"b1": {"steps": 9, "complete": False, "data": "x"}}}
        >>> b = {"format": RECORD_FORMAT, "batches": {"b1": {"steps": 12, "complete": True, "data": "y"},
        ...                                           "b2": {"steps": 3, "complete": False, "data": "z"}}}
        >>> sorted((k, v["data"]) for k, v in merge_records(a, b)["batches"].items())
        [('b1', 'y'), ('b2', 'z')]
    """
    batches = dict((old or {}).get("batches", {}))
    for key, batch in (new or {}).get("batches", {}).items():
        if key not in batches or (batch["complete"], batch["steps"]) > (
            batches[key]["complete"],
            batches[key]["steps"],
        ):
            batches[key] = batch
    return {"format": RECORD_FORMAT, "batches": batches}


__all__ = ["FORMAT", "RECORD_FORMAT", "DecodeCache", "digest", "merge_records", "model_fingerprint"]
