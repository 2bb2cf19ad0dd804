"""Rebuild the shipped Bible corpora in ``search/data/`` from the SWORD modules of Debian.

Corpora (all texts public domain):

- ``bible-en-es``: World English Bible (``sword-text-web``) -> Reina-Valera 1909 (``sword-text-sparv``);
- ``bible-kjv-web``: King James Version (``sword-text-kjv``) -> World English Bible (old -> modern English).

Verses are aligned by reference (book, chapter, verse). The raw OSIS text of each verse is cleaned here rather than
with pysword's ``clean=True``, which deletes footnotes without leaving a space and glues words ("only bornSon").
A chapter whose verses are present in one text but not the other is numbered differently in the two texts (the
Reina-Valera follows the Hebrew chapter breaks in a few places, e.g. 1 Sam 23:29 is its 24:1), so the whole chapter
is dropped, and the next one too when the gap is at the chapter's end; so is a chapter with a verse pair whose
lengths differ by more than 2x (verses split differently, e.g. 1 Chr 21). Pairs with more than 30 words on a side are
dropped. RV1909's typesetting is undone: capitalised first words of chapters, missing spaces between words, the
acrostic letter names of Psalm 119 and the subscriptions of the epistles ("Escrita de Roma ..."). Dev and test
verses are drawn, with a fixed seed, among pairs whose source and target occur only once in the corpus, so that no
test sentence also appears in train.

Run (needs ``apt-get install sword-text-web sword-text-sparv sword-text-kjv`` and ``pip install pysword``; about
2 minutes of CPU):

    python experiments/build_bible_corpus.py

The output is deterministic: re-running it gives byte-identical files. ``--smoke-test`` needs neither the Debian
packages nor pysword: it checks the shipped files against their ``meta.json`` (sha256, counts, columns) and runs the
markup cleaner on built-in samples.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import html
import io
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "search" / "data"
SWORD_DIR = Path("/usr/share/sword")
MAX_WORDS = 30  # keep pairs with at most this many whitespace-separated words on each side
MIN_RATIO, MAX_RATIO = 0.5, 2.0  # a chapter with a verse pair outside this character-length ratio is misaligned
TEST_SIZE = 1000
DEV_SIZE = 500
SEED = 1909

MODULES = {  # SWORD module key -> (Debian package, short name)
    "engWEB2015eb": ("sword-text-web", "World English Bible"),
    "spaRV1909eb": ("sword-text-sparv", "Reina-Valera 1909"),
    "engKJV2006eb": ("sword-text-kjv", "King James Version"),
}
CORPORA = {  # corpus name -> (source module, source language, target module, target language)
    "bible-en-es": ("engWEB2015eb", "en", "spaRV1909eb", "es"),
    "bible-kjv-web": ("engKJV2006eb", "en", "engWEB2015eb", "en"),
}

# Elements removed with their content: notes (footnotes, cross references, variant readings inside them), section
# headings (titles that are not canonical psalm superscriptions), speaker labels (Song of Songs) and the glossary
# list the WEB appends to Rev 22:21, and the Hebrew letter names heading the stanzas of Psalm 119.
_DROPPED = re.compile(
    r"<note\b.*?</note>|<title\b(?![^>]*canonical=\"true\")[^>]*>.*?</title>|<speaker\b.*?</speaker>"
    r"|<list\b.*?</list>|<title\b[^>]*>[A-Z]+\.?</title>",
    re.DOTALL,
)
_EMPTY_ELEMENT = re.compile(r"<[^<>]*/>")  # milestones, <lb/>, <l sID=.../>: they separate words
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_APPENDIX = re.compile(r'<div\b[^>]*type="glossary"')  # the WEB appends its glossary to Rev 22:21
_GAP = "\x00"  # where a removed element or an empty element stood
_GAP_BEFORE_CLOSING = re.compile(r"\s*\x00[\s\x00]*(?=[,.;:!?”’)\]—])")
_GAP_AFTER_OPENING = re.compile(r"(?<=[“‘(\[¿¡—])[\s\x00]*\x00\s*")
_ADJACENT_WORDS = re.compile(
    r"(?P<host>[^\s<>]*)</(?:w|transChange)>(?:</?(?:q|seg|divineName)[^>]*>)*<(?:w|transChange)\b[^>]*>(?P<next>[^\W\d_]+)"
)
_ENCLITICS = {"lo", "la", "los", "las", "le", "les", "me", "te", "se", "nos", "os"}
_ENCLITIC_SHORT_HOSTS = {"di", "dí", "vi", "da", "haz", "ve", "ten", "pon", "sal"}
_ACCENTED_NON_VERBS = {
    "josué",
    "jehová",
    "también",
    "sólo",
    "éste",
    "ésta",
    "así",
    "allí",
    "aquí",
    "después",
    "según",
    "más",
    "él",
    "aún",
    "está",
    "están",
}
_EPISTLES = {
    "Rom",
    "1Cor",
    "2Cor",
    "Gal",
    "Eph",
    "Phil",
    "Col",
    "1Thess",
    "2Thess",
    "1Tim",
    "2Tim",
    "Titus",
    "Phlm",
    "Heb",
}
_SUBSCRIPTION = re.compile(r"(?<=Amén\.)\s.*\b(?:escrita|enviada)\b.*$", re.IGNORECASE | re.DOTALL)
# RV1909 prints the first word or two of a chapter in capitals ("HE AQUÍ que", "Y YO me paré").
_DROP_CAP = re.compile(r"(?<!\w)[A-ZÁÉÍÓÚÑÜ]{2,}(?:\s+[A-ZÁÉÍÓÚÑÜ]{2,})*(?!\w)")
_DIVINE_NAMES = {"JEHOVÁ", "DIOS", "JAH", "SEÑOR"}
_ACROSTIC = re.compile(r"^[A-Z]+\.\s+")  # "ALEPH. " before each stanza of RV1909's Psalm 119

SAMPLES = [  # (raw OSIS, expected clean text): the cases met in these modules, checked by --smoke-test
    (
        '<w lemma="strong:G3439">only</w> born</q><note placement="foot"><reference type="annotateRef">3:16 '
        '</reference>The phrase “only born” is from the Greek.</note><q marker=""><w lemma="strong:G5207">Son</w>, '
        "that",
        "only born Son, that",
    ),
    ('<w>God</w><note placement="foot">Elohim</note><w>created</w>', "God created"),
    ('Bethsphage,<note placement="foot">TR &amp;NU read “Bethphage”</note> to the', "Bethsphage, to the"),
    ('the Lord<note type="crossReference">Isaiah 57:15</note>.', "the Lord."),
    ('“<note placement="foot">x</note>Reuben', "“Reuben"),
    (
        '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="g1"/> <l level="1" sID="g2"/>'
        'Yahweh, how <w>my</w> adversaries increased!<l eID="g2"/><l sID="g3"/>Many rise up.',
        "A Psalm by David. Yahweh, how my adversaries increased! Many rise up.",
    ),
    ('<title><foreign>ב BETH.</foreign></title> <l sID="x"/>Wherewithal shall', "Wherewithal shall"),
    ("<speaker>Beloved</speaker> <l/>Let him kiss me", "Let him kiss me"),
    (
        '<q who="Jesus">¶ <w>Blessed</w> <seg><transChange type="added">are</transChange></seg> the poor</q> ',
        "Blessed are the poor",
    ),
    ("<divineName><w>LORD</w></divineName>, how", "LORD, how"),
    ('coins</q> <note placement="foot">An assarion</note> <q>? Not', "coins? Not"),
    ('saints. Amen. <chapter eID="Rev.22"/> <div sID="g" type="glossary"/> The following words', "saints. Amen."),
]
RV1909_SAMPLES = [  # (verse 1 of a chapter, expected)
    ("ENTONCES David subió", "Entonces David subió"),
    ("HE AQUÍ que todas", "He aquí que todas"),
    ("Y YO me paré", "Y yo me paré"),
    ("Salmo de David. DE JEHOVÁ es la tierra", "Salmo de David. De Jehová es la tierra"),
]


def clean_osis(raw: str) -> str:
    """Plain text of one verse of OSIS markup: notes and headings removed with their content, other words kept.

    Example:
        >>> clean_osis('<w>only</w> born</q><note placement="foot">Greek</note><q><w>Son</w>')
        'only born Son'
    """
    text = _APPENDIX.split(raw, maxsplit=1)[0]
    text = _DROPPED.sub(_GAP, text)
    text = _EMPTY_ELEMENT.sub(_GAP, text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("¶", "")
    text = _GAP_BEFORE_CLOSING.sub("", text)
    text = _GAP_AFTER_OPENING.sub("", text)
    return " ".join(text.replace(_GAP, " ").split())


def separate_rv1909_words(raw: str) -> str:
    """Put the space RV1909 lacks between adjacent word elements ("díjole</w><w>Dios"), but not before enclitics."""

    def join(match: re.Match) -> str:
        host, enclitic = match.group("host"), match.group("next")
        attach = enclitic in _ENCLITICS and (
            re.search(r"(r|d|z|ndo)$", host) is not None
            or host.lower() in _ENCLITIC_SHORT_HOSTS
            or (re.search(r"[áéíóú]", host) is not None and host.lower() not in _ACCENTED_NON_VERBS)
        )
        return match.group(0) if attach else match.group(0).replace("><", "> <", 1)

    return _ADJACENT_WORDS.sub(join, raw)


def normalise_rv1909(text: str, ref: tuple[str, int, int]) -> str:
    """Undo RV1909's typesetting: the acrostic letter names of Psalm 119 and the capitalised first word of chapters."""
    book, chapter, verse = ref
    if book in _EPISTLES:  # the KJV's subscriptions ("Escrita de Roma ...") are verse text in RV1909
        text = _SUBSCRIPTION.sub("", text)
    if book == "Ps" and chapter == 119 and verse % 8 == 1:
        text = _ACROSTIC.sub("", text)
    if verse == 1 or (book == "Ps" and chapter == 119 and verse % 8 == 1):
        match = _DROP_CAP.search(text)
        if match:
            starts_sentence = re.fullmatch(r"(.*[.!?:])?[\W]*", text[: match.start()], re.DOTALL) is not None
            first, *rest = match.group(0).split()
            words = [first.capitalize() if starts_sentence or first in _DIVINE_NAMES else first.lower()]
            words += [w.capitalize() if w in _DIVINE_NAMES else w.lower() for w in rest]
            text = text[: match.start()] + " ".join(words) + text[match.end() :]
    return text


def read_module(key: str) -> dict[tuple[str, int, int], str]:
    """Clean text of every non-empty verse of a SWORD module, keyed by (OSIS book, chapter, verse)."""
    from pysword.modules import SwordModules

    modules = SwordModules(str(SWORD_DIR))
    modules.parse_modules()
    bible = modules.get_bible_from_module(key)
    structure = bible.get_structure()
    verses = {}
    for testament, books in structure.get_books().items():
        for book in books:
            refs = [(book.osis_name, c + 1, v + 1) for c, n in enumerate(book.chapter_lengths) for v in range(n)]
            indices = structure.ref_to_indicies(books=book.name)[testament]
            for ref, index in zip(refs, indices, strict=True):
                # The public get_iter() skips empty verses, which would shift the numbering: read by index.
                raw = bible._text_for_index(testament, index) or ""
                if key == "spaRV1909eb":
                    text = normalise_rv1909(clean_osis(separate_rv1909_words(raw)), ref)
                else:
                    text = clean_osis(raw)
                if text:
                    verses[ref] = text
    return verses


def align(source: dict, target: dict, order: list[str]) -> tuple[list[tuple[str, str, str]], dict]:
    """(ref, source, target) for every verse of both texts, minus chapters numbered differently in the two."""
    chapters: dict[tuple[str, int], dict[int, tuple[bool, bool]]] = defaultdict(dict)
    for book, chapter, verse in set(source) | set(target):
        chapters[book, chapter][verse] = ((book, chapter, verse) in source, (book, chapter, verse) in target)
    dropped = set()
    for (book, chapter), verses in chapters.items():
        if not any(s for s, _ in verses.values()) or not any(t for _, t in verses.values()):
            continue  # a chapter of one text only (deuterocanonical books)
        gaps = [v for v, (s, t) in verses.items() if s != t]
        if gaps:
            dropped.add((book, chapter))
            if max(gaps) == max(verses):
                dropped.add((book, chapter + 1))
        # Verses split differently without a gap show as a verse twice or half as long as its partner.
        ratios = [
            len(target[book, chapter, v]) / len(source[book, chapter, v]) for v, (s, t) in verses.items() if s and t
        ]
        if any(not MIN_RATIO <= r <= MAX_RATIO for r in ratios):
            dropped.add((book, chapter))
    rank = {book: i for i, book in enumerate(order)}
    refs = sorted((set(source) & set(target)), key=lambda r: (rank[r[0]], r[1], r[2]))
    rows = [(f"{b}.{c}.{v}", source[b, c, v], target[b, c, v]) for b, c, v in refs if (b, c) not in dropped]
    stats = {"aligned_verses": len(refs), "dropped_chapters": sorted(f"{b}.{c}" for b, c in dropped)}
    return rows, stats


def split(rows: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str, str]]]:
    """Seeded test/dev/train split; test and dev only take pairs whose source and target are unique in the corpus."""
    count = defaultdict(int)
    for _, src, tgt in rows:
        count["s", src] += 1
        count["t", tgt] += 1
    unique = [i for i, (_, src, tgt) in enumerate(rows) if count["s", src] == 1 and count["t", tgt] == 1]
    random.Random(SEED).shuffle(unique)
    test, dev = set(unique[:TEST_SIZE]), set(unique[TEST_SIZE : TEST_SIZE + DEV_SIZE])
    return {
        "train": [r for i, r in enumerate(rows) if i not in test and i not in dev],
        "dev": [r for i, r in enumerate(rows) if i in dev],
        "test": [r for i, r in enumerate(rows) if i in test],
    }


def write_tsv_gz(path: Path, rows: list[tuple[str, str, str]]) -> str:
    """Write ``ref<TAB>source<TAB>target`` rows with a header, gzip without timestamp; return the file's sha256."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar=None)
    writer.writerow(["ref", "source", "target"])
    writer.writerows(rows)
    data = gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=9, mtime=0)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def module_info(key: str) -> dict:
    """Provenance of a SWORD module from its ``mods.d`` conf file."""
    conf = {}
    for path in (SWORD_DIR / "mods.d").glob("*.conf"):
        text = path.read_text(encoding="utf-8", errors="replace")
        if f"[{key}]" in text:
            for line in text.splitlines():
                name, sep, value = line.partition("=")
                if sep and name in (
                    "Description",
                    "Version",
                    "SwordVersionDate",
                    "DistributionLicense",
                    "Versification",
                ):
                    conf[name] = value.strip()
    package, title = MODULES[key]
    return {"module": key, "debian_package": package, "title": title, **conf}


def build(name: str, texts: dict[str, dict], order: list[str]) -> dict:
    """Align, filter, split and write one corpus; return its meta.json content."""
    src_key, src_lang, tgt_key, tgt_lang = CORPORA[name]
    rows, stats = align(texts[src_key], texts[tgt_key], order)
    kept = [r for r in rows if len(r[1].split()) <= MAX_WORDS and len(r[2].split()) <= MAX_WORDS]
    out = DATA_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split_name, split_rows in split(kept).items():
        sha = write_tsv_gz(out / f"{split_name}.tsv.gz", split_rows)
        files[split_name] = {"file": f"{split_name}.tsv.gz", "pairs": len(split_rows), "sha256": sha}
    meta = {
        "name": name,
        "source": {"language": src_lang, **module_info(src_key)},
        "target": {"language": tgt_lang, **module_info(tgt_key)},
        "licence": "public domain (both texts)",
        "columns": ["ref", "source", "target"],
        "splits": files,
        "build": {
            "script": "experiments/build_bible_corpus.py",
            "seed": SEED,
            "max_words": MAX_WORDS,
            "aligned_verses": stats["aligned_verses"],
            "verses_after_chapter_check": len(rows),
            "pairs_kept": len(kept),
            "dropped_chapters": stats["dropped_chapters"],
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme(meta), encoding="utf-8")
    return meta


def readme(meta: dict) -> str:
    """A short human-readable provenance note for one corpus directory."""
    src, tgt, b = meta["source"], meta["target"], meta["build"]
    counts = ", ".join(f"{k} {v['pairs']:,}" for k, v in meta["splits"].items())
    return (
        f"# {meta['name']}\n\n"
        f"{src['title']} ({src['language']}, SWORD module {src['module']} {src.get('Version', '')}) -> "
        f"{tgt['title']} ({tgt['language']}, SWORD module {tgt['module']} {tgt.get('Version', '')}), "
        f"verses aligned by reference. Both texts are in the public domain.\n\n"
        f"Pairs: {counts} (of {b['aligned_verses']:,} aligned verses; at most {b['max_words']} words a side; "
        f"{len(b['dropped_chapters'])} chapters numbered differently in the two texts dropped).\n\n"
        "Files: `train.tsv.gz`, `dev.tsv.gz`, `test.tsv.gz`, tab-separated with a header `ref source target`; "
        "`ref` is an OSIS reference such as `John.3.16`. Checksums and counts are in `meta.json`.\n\n"
        "Rebuild: `python experiments/build_bible_corpus.py` (needs the Debian packages "
        f"`{src['debian_package']}` and `{tgt['debian_package']}`, and `pysword`).\n"
    )


def smoke_test() -> None:
    """Check the cleaner on built-in samples and the shipped files against their meta.json; raise on a mismatch."""
    for raw, expected in SAMPLES:
        got = clean_osis(raw)
        if got != expected:
            raise SystemExit(f"clean_osis({raw!r}) gave {got!r}, expected {expected!r}")
    for text, expected in RV1909_SAMPLES:
        if normalise_rv1909(text, ("Job", 13, 1)) != expected:
            raise SystemExit(f"normalise_rv1909({text!r}) gave {normalise_rv1909(text, ('Job', 13, 1))!r}")
    for name in CORPORA:
        meta = json.loads((DATA_DIR / name / "meta.json").read_text(encoding="utf-8"))
        for info in meta["splits"].values():
            data = (DATA_DIR / name / info["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != info["sha256"]:
                raise SystemExit(f"{name}/{info['file']}: sha256 differs from meta.json; rebuild the corpus")
            lines = gzip.decompress(data).decode("utf-8").split("\n")
            rows = [line.split("\t") for line in lines[1:] if line]
            if lines[0].split("\t") != meta["columns"] or len(rows) != info["pairs"]:
                raise SystemExit(f"{name}/{info['file']}: header or count ({len(rows)}) differs from meta.json")
            if any(len(r) != 3 or not r[1] or not r[2] for r in rows):
                raise SystemExit(f"{name}/{info['file']}: a row without 3 non-empty columns")
        print(f"{name}: " + ", ".join(f"{k} {v['pairs']}" for k, v in meta["splits"].items()) + " - checksums match")
    print(f"clean_osis, normalise_rv1909: {len(SAMPLES) + len(RV1909_SAMPLES)} markup samples clean as expected")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke-test", action="store_true", help="verify shipped files and the cleaner; no build")
    args = parser.parse_args(argv)
    if args.smoke_test:
        smoke_test()
        return
    try:
        from pysword.canons import canons
    except ImportError:
        sys.exit("pysword is missing: pip install pysword==0.2.8")
    confs = [p.read_text(errors="replace") for p in (SWORD_DIR / "mods.d").glob("*.conf")]
    missing = [pkg for key, (pkg, _) in MODULES.items() if not any(f"[{key}]" in conf for conf in confs)]
    if missing:
        sys.exit(f"SWORD modules missing: apt-get install -y {' '.join(missing)}")
    order = [book[1] for testament in ("ot", "nt") for book in canons["nrsva"][testament]]
    texts = {}
    for key in MODULES:
        texts[key] = read_module(key)
        print(f"read {key}: {len(texts[key]):,} verses", flush=True)
    for name in CORPORA:
        meta = build(name, texts, order)
        print(f"{name}: " + ", ".join(f"{k} {v['pairs']:,}" for k, v in meta["splits"].items()))


if __name__ == "__main__":
    main()
