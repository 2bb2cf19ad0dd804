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

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pass lock: concurrent trials of one pass wait for the trial that computes it.

        ``filelock`` uses ``fcntl`` locks here, which the OS releases if the holder dies, so a crashed trial never
        leaves the pass locked.
        """
        from filelock import FileLock

        with FileLock(self.lock_path):
            yield


__all__ = ["FORMAT", "DecodeCache", "digest", "model_fingerprint"]
