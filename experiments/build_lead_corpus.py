"""Derive the shipped ``bible-lead`` corpus (passage -> its lead verse) from the shipped ``bible-en-es`` corpus.

What it is, honestly: a stand-in for summarization that the project can ship and a tiny model can learn. The source
is a passage of ``PASSAGE_VERSES`` consecutive verses of one chapter of the World English Bible (public domain), the
target is the passage's first verse: a "lead" extract, the classic summarization baseline (lead-3 of news articles),
not a human-written abstract. A model must learn where the lead ends and to stop there, which is what ROUGE and
decoding parameters such as ``length_penalty`` and ``no_repeat_ngram_size`` measure and steer.

The English side of ``search/data/bible-en-es`` (every split, put back in canonical order by reference) is the only
input: no internet, no Debian packages. Passages never overlap and are drawn with a fixed seed, so no verse of a dev
or test passage occurs in a train passage; dev and test take only passages whose source and target texts occur once
among all passages (a few verses repeat word for word, such as psalm titles). Verses longer than 30 words were already left out of ``bible-en-es``;
passages skip those gaps (their verse numbers must be consecutive).

Run:

    python experiments/build_lead_corpus.py

The output is deterministic: re-running it gives byte-identical files. ``--smoke-test`` rebuilds the corpus in memory
and checks it against the shipped files and their ``meta.json``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import random
from collections import Counter
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "search" / "data"
SOURCE_CORPUS = "bible-en-es"  # its `source` column is the World English Bible
NAME = "bible-lead"
PASSAGE_VERSES = 4  # verses per passage: ~60-120 words in, one verse (~20 words) out
SIZES = {"train": 1200, "dev": 150, "test": 150}  # passages per split: ~200 KB gzipped in all
SEED = 2026
COLUMNS = ["ref", "source", "target"]


def read_verses() -> list[tuple[str, int, int, str]]:
    """``(book, chapter, verse, text)`` of every English verse of the source corpus, in canonical order."""
    books: dict[str, int] = {}  # book -> its position; the train split lists the verses in canonical order
    verses = []
    for split in ("train", "dev", "test"):
        with gzip.open(DATA_DIR / SOURCE_CORPUS / f"{split}.tsv.gz", "rt", encoding="utf-8", newline="\n") as handle:
            for line in list(handle)[1:]:
                ref, source, _ = line.rstrip("\n").split("\t")
                book, chapter, verse = ref.rsplit(".", 2)
                books.setdefault(book, len(books))
                verses.append((book, int(chapter), int(verse), source))
    return sorted(verses, key=lambda v: (books[v[0]], v[1], v[2]))


def passages(verses: list[tuple[str, int, int, str]]) -> list[tuple[str, str, str]]:
    """Non-overlapping runs of ``PASSAGE_VERSES`` consecutive verses of one chapter, as ``(ref, source, target)``."""
    out, i = [], 0
    while i + PASSAGE_VERSES <= len(verses):
        run = verses[i : i + PASSAGE_VERSES]
        book, chapter, first, _ = run[0]
        if all(v[0] == book and v[1] == chapter and v[2] == first + k for k, v in enumerate(run)):
            ref = f"{book}.{chapter}.{first}-{first + PASSAGE_VERSES - 1}"
            out.append((ref, " ".join(v[3] for v in run), run[0][3]))
            i += PASSAGE_VERSES
        else:
            i += 1
    return out


def build() -> dict[str, bytes]:
    """The gzipped TSV of each split: a seeded draw of passages, each split in canonical order; test and dev first,
    among the passages whose texts are unique, so that no text of theirs occurs in another split."""
    candidates = passages(read_verses())
    count = Counter(text for _, source, target in candidates for text in {source, target})
    unique = [i for i, (_, source, target) in enumerate(candidates) if count[source] == count[target] == 1]
    random.Random(SEED).shuffle(unique)
    held_out = {"test": unique[: SIZES["test"]], "dev": unique[SIZES["test"] : SIZES["test"] + SIZES["dev"]]}
    rest = sorted(set(range(len(candidates))) - {i for ids in held_out.values() for i in ids})
    random.Random(SEED).shuffle(rest)
    chosen = {**held_out, "train": rest[: SIZES["train"]]}
    files = {}
    for split in SIZES:
        picked = sorted(chosen[split])
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar=None)
        writer.writerow(COLUMNS)
        writer.writerows(candidates[i] for i in picked)
        files[split] = gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=9, mtime=0)
    return files


def meta(files: dict[str, bytes]) -> dict:
    source = json.loads((DATA_DIR / SOURCE_CORPUS / "meta.json").read_text(encoding="utf-8"))["source"]
    return {
        "name": NAME,
        "task": f"summarization stand-in: a passage of {PASSAGE_VERSES} consecutive verses -> its first verse (lead)",
        "source": {**source, "derived_from": f"search/data/{SOURCE_CORPUS} (its source column)"},
        "licence": "public domain",
        "columns": COLUMNS,
        "splits": {
            split: {"file": f"{split}.tsv.gz", "pairs": SIZES[split], "sha256": hashlib.sha256(data).hexdigest()}
            for split, data in files.items()
        },
        "build": {"script": "experiments/build_lead_corpus.py", "seed": SEED, "passage_verses": PASSAGE_VERSES},
    }


README = f"""# {NAME}

A stand-in for summarization, derived from the World English Bible (public domain) as shipped in
`search/data/{SOURCE_CORPUS}`: the source is a passage of {PASSAGE_VERSES} consecutive verses of one chapter, the
target its first verse (a "lead" extract, the classic summarization baseline, not a human-written abstract).

Pairs: train {SIZES["train"]:,}, dev {SIZES["dev"]:,}, test {SIZES["test"]:,}; passages never overlap.

Files: `train.tsv.gz`, `dev.tsv.gz`, `test.tsv.gz`, tab-separated with a header `ref source target`; `ref` is an
OSIS reference range such as `John.3.16-19`. Checksums and counts are in `meta.json`.

Rebuild: `python experiments/build_lead_corpus.py` (reads only the shipped `{SOURCE_CORPUS}` files).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke-test", action="store_true", help="rebuild in memory and compare with the shipped files"
    )
    args = parser.parse_args(argv)
    files = build()
    out = DATA_DIR / NAME
    if args.smoke_test:
        shipped = json.loads((out / "meta.json").read_text(encoding="utf-8"))
        for split, data in files.items():
            if (out / f"{split}.tsv.gz").read_bytes() != data or shipped != meta(files):
                raise SystemExit(f"{NAME}/{split}.tsv.gz or meta.json differs from a rebuild; rerun the script")
        counts = ", ".join(f"{split} {size}" for split, size in SIZES.items())
        print(f"{NAME}: {counts} - rebuilt byte-identical")
        return
    out.mkdir(parents=True, exist_ok=True)
    for split, data in files.items():
        (out / f"{split}.tsv.gz").write_bytes(data)
    (out / "meta.json").write_text(json.dumps(meta(files), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.md").write_text(README, encoding="utf-8")
    print(f"{NAME}: " + ", ".join(f"{split} {len(gzip.decompress(d).splitlines()) - 1}" for split, d in files.items()))


if __name__ == "__main__":
    main()
