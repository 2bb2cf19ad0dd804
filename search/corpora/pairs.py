"""What every data source returns: aligned (source, reference) pairs, checked for empty rows."""

from __future__ import annotations

from dataclasses import dataclass

from search.errors import DataError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Pairs:
    """Aligned source sentences and their references, with a name for logs (``bible-en-es/dev``, ``dev.tsv``)."""

    sources: list[str]
    references: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.sources)


def checked(sources: list, references: list, name: str, file: str, key: str, src: str, ref: str) -> Pairs:
    """``Pairs`` of the texts, or a DataError naming ``key`` and the first empty split or row (``src``/``ref`` say
    where the sources and references came from)."""
    if not sources:
        raise DataError(file, key, f"{src}: the split is empty; add sentences")
    for i, (s, r) in enumerate(zip(sources, references, strict=True)):
        for text, where in ((s, src), (r, ref)):
            if text is None or (isinstance(text, str) and not text.strip()):
                raise DataError(file, key, f"{where}: row {i + 1} is empty; remove the row or fill it in")
    return Pairs([str(s) for s in sources], [str(r) for r in references], name)


__all__ = ["SPLITS", "Pairs", "checked"]
