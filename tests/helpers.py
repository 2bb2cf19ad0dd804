"""Plain data and functions the tests share: deterministic reference sentences and their corrupted translations.

A plain module (not ``conftest``) because tests/toy_trainables.py, which Ray loads by file path, imports it too.
"""

from __future__ import annotations

WORDS = "the a cat dog sat ran on under mat park house tree big small red blue".split()
REFERENCES = [" ".join(WORDS[(i * 3 + k * 5) % len(WORDS)] for k in range(6 + i % 5)) for i in range(80)]
TOY_REFERENCES = REFERENCES[:40]  # what the toy trainables score and the tiny model's tokenizer learns


def translations(error_rate: float, references: list[str] = REFERENCES) -> list[str]:
    """``references`` with a deterministic share of words replaced by ``zz``."""
    out = []
    for i, ref in enumerate(references):
        words = ref.split()
        out.append(" ".join("zz" if ((i * 37 + j * 11) % 100) / 100 < error_rate else w for j, w in enumerate(words)))
    return out
