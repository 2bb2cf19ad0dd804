"""The files a trainable leaves in its trial directory, for the ranking and the export to read.

A trainable runs in Tune's working directory for the trial; the runner syncs what it writes there into the trial
directory:

    hypotheses.txt, references.txt   the dev translations of the last report, one sentence a line (paired bootstrap)
    generate_args.json               the generate() arguments the trial was scored with (a decoding trial's export)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search.files import atomic_write

HYPOTHESES_FILE = "hypotheses.txt"
REFERENCES_FILE = "references.txt"
GENERATE_ARGS_FILE = "generate_args.json"


def write_translations(directory: Path, hypotheses: list[str], references: list[str]) -> None:
    """``hypotheses.txt`` and ``references.txt``, one sentence a line, for the ranking's paired bootstrap."""
    for name, lines in ((HYPOTHESES_FILE, hypotheses), (REFERENCES_FILE, references)):
        atomic_write(Path(directory) / name, "".join(" ".join(line.split()) + "\n" for line in lines))


def write_generate_args(directory: Path, args: dict[str, Any]) -> None:
    """``generate_args.json``: every ``generate()`` argument the trial decoded with (export makes them defaults)."""
    atomic_write(Path(directory) / GENERATE_ARGS_FILE, json.dumps(args, sort_keys=True, indent=1) + "\n")


__all__ = ["GENERATE_ARGS_FILE", "HYPOTHESES_FILE", "REFERENCES_FILE", "write_generate_args", "write_translations"]
