"""search.corpora: the shipped Bible corpora, each user-data form, and one-line errors for bad data."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from search.corpora import CORPORA, Pairs, load_pairs, validate_data
from search.errors import DataError

DATA = Path(__file__).parent / "data"
VERSE_CORPORA = ("bible-en-es", "bible-kjv-web")  # one verse a side; bible-lead's sources are passages of 4 verses
BUILD_SCRIPT = Path(__file__).parent.parent / "experiments" / "build_bible_corpus.py"


def _build_module():
    spec = importlib.util.spec_from_file_location("build_bible_corpus", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _meta(corpus: str) -> dict:
    return json.loads((CORPORA[corpus] / "meta.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def shipped() -> dict[tuple[str, str], Pairs]:
    return {(c, s): load_pairs({"corpus": c}, s) for c in CORPORA for s in ("train", "dev", "test")}


# --- shipped corpora --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_shipped_splits_have_the_sizes_and_checksums_of_meta_json(corpus, shipped):
    meta = _meta(corpus)
    assert meta["licence"].startswith("public domain")
    for split, info in meta["splits"].items():
        data = (CORPORA[corpus] / info["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
        assert len(shipped[corpus, split]) == info["pairs"]
    if corpus in VERSE_CORPORA:
        assert len(shipped[corpus, "test"]) == 1000
        assert len(shipped[corpus, "dev"]) == 500
        assert len(shipped[corpus, "train"]) > 15000


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_shipped_splits_are_disjoint_by_reference_and_by_text(corpus, shipped):
    refs, sources, targets = {}, {}, {}
    for split in ("train", "dev", "test"):
        lines = gzip.decompress((CORPORA[corpus] / f"{split}.tsv.gz").read_bytes()).decode("utf-8").splitlines()
        rows = [line.split("\t") for line in lines[1:]]
        refs[split] = {r[0] for r in rows}
        assert len(refs[split]) == len(rows)
        sources[split], targets[split] = set(shipped[corpus, split].sources), set(shipped[corpus, split].references)
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not refs[a] & refs[b]
        assert not sources[a] & sources[b]
        assert not targets[a] & targets[b]


def test_shipped_text_is_clean(shipped):
    for (corpus, split), pairs in shipped.items():
        for text in pairs.sources + pairs.references:
            assert text and text == " ".join(text.split()), (corpus, split, text)
            assert len(text.split()) <= (30 if corpus in VERSE_CORPORA else 4 * 30)
            assert not re.search(r"[<>]|&\w+;|\x00|¶", text), (corpus, split, text)
            # A footnote removed without a space glues words: "only bornSon".
            assert not re.search(r"[a-zà-ÿ][A-ZÀ-Ý]", text), (corpus, split, text)


def test_shipped_en_es_pairs_are_aligned_on_known_verses(shipped):
    pairs = {}
    for split in ("train", "dev", "test"):
        p = shipped["bible-en-es", split]
        pairs.update(zip(p.sources, p.references, strict=True))
    assert pairs["In the beginning, God created the heavens and the earth."] == (
        "En el principio crió Dios los cielos y la tierra."
    )


def test_load_pairs_limit_and_name():
    pairs = load_pairs({"corpus": "bible-en-es"}, "dev", limit=3)
    assert len(pairs) == 3 and pairs.name == "bible-en-es/dev"
    assert pairs.sources == load_pairs({"corpus": "bible-en-es"}, "dev").sources[:3]


# --- the markup cleaner of the build script ---------------------------------------------------------------------


def test_build_script_cleaner_matches_its_samples():
    build = _build_module()
    for raw, expected in build.SAMPLES:
        assert build.clean_osis(raw) == expected
    for text, expected in build.RV1909_SAMPLES:
        assert build.normalise_rv1909(text, ("Job", 13, 1)) == expected
    spaced = build.separate_rv1909_words("<w>díjole</w><w>Dios</w> <w>sáca</w><transChange>lo</transChange>")
    assert build.clean_osis(spaced) == "díjole Dios sácalo"


def test_build_script_smoke_test_passes(capsys):
    _build_module().main(["--smoke-test"])
    assert "checksums match" in capsys.readouterr().out


# --- the user's files -------------------------------------------------------------------------------------------


def test_tsv_keeps_quotes_and_na_literally():
    data = {"dev": str(DATA / "pairs.tsv"), "source_field": "en", "target_field": "es"}
    pairs = load_pairs(data, "dev")
    assert pairs.sources == ["The house is red.", 'I have "two" cats.', "NA"]
    assert pairs.references == ["La casa es roja.", 'Tengo "dos" gatos.', "NA"]
    assert pairs.name == "pairs.tsv"


def test_csv_and_jsonl_and_explicit_format(tmp_path):
    csv_pairs = load_pairs({"test": str(DATA / "pairs.csv"), "source_field": "en", "target_field": "es"}, "test")
    assert csv_pairs.sources == ["Hello, world.", "Good night."]
    assert csv_pairs.references == ["Hola mundo.", "Buenas noches."]
    jsonl = load_pairs({"train": str(DATA / "pairs.jsonl"), "source_field": "en", "target_field": "es"}, "train")
    assert jsonl.references == ["Gracias.", "Hasta mañana."]
    odd = tmp_path / "pairs.txt"
    shutil.copy(DATA / "pairs.jsonl", odd)
    explicit = load_pairs({"dev": str(odd), "format": "jsonl", "source_field": "en", "target_field": "es"}, "dev")
    assert explicit.sources == jsonl.sources


def test_datasets_leaves_no_cache_next_to_the_data(tmp_path):
    shutil.copy(DATA / "pairs.tsv", tmp_path / "pairs.tsv")
    load_pairs({"dev": str(tmp_path / "pairs.tsv"), "source_field": "en", "target_field": "es"}, "dev")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


def test_plain_text_per_split_and_short_form():
    per_split = load_pairs({"dev": {"source": str(DATA / "dev.en"), "reference": str(DATA / "dev.es")}}, "dev")
    assert per_split.sources == ["The sun rises.", "The moon sets."]
    assert per_split.references == ["El sol sale.", "La luna se pone."]
    short = load_pairs({"source": str(DATA / "dev.en"), "reference": str(DATA / "dev.es")}, "test")
    assert short == Pairs(per_split.sources, per_split.references, "dev.en+dev.es")


# --- bad data: one line naming the file, the key and the fix ----------------------------------------------------


def _error(data: dict, split: str = "dev") -> str:
    with pytest.raises(DataError) as info:
        load_pairs(data, split, file="sweep.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("sweep.yaml: ")
    return message


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.tsv"
    assert (
        _error({"dev": str(missing)})
        == f"sweep.yaml: data.dev: file not found: {missing}; fix the path or create the file"
    )
    message = _error({"dev": {"source": str(DATA / "dev.en"), "reference": str(missing)}})
    assert message.startswith(f"sweep.yaml: data.dev.reference: file not found: {missing}")


def test_missing_field_lists_the_fields():
    message = _error({"dev": str(DATA / "pairs.tsv"), "source_field": "english", "target_field": "es"})
    assert message == (
        f"sweep.yaml: data.source_field: {DATA / 'pairs.tsv'} has no field 'english'; "
        "its fields are: id, en, es; set data.source_field"
    )


def test_empty_split(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("source\ttarget\n", encoding="utf-8")
    assert _error({"dev": str(empty)}) == f"sweep.yaml: data.dev: {empty}: the split is empty; add rows"
    (tmp_path / "a.en").write_text("", encoding="utf-8")
    (tmp_path / "a.es").write_text("", encoding="utf-8")
    message = _error({"source": str(tmp_path / "a.en"), "reference": str(tmp_path / "a.es")})
    assert message == f"sweep.yaml: data: {tmp_path / 'a.en'}: the split is empty; add sentences"


def test_empty_row(tmp_path):
    (tmp_path / "a.en").write_text("one\n\nthree\n", encoding="utf-8")
    (tmp_path / "a.es").write_text("uno\ndos\ntres\n", encoding="utf-8")
    message = _error({"dev": {"source": str(tmp_path / "a.en"), "reference": str(tmp_path / "a.es")}})
    assert message.endswith(f"{tmp_path / 'a.en'}: row 2 is empty; remove the row or fill it in")


def test_unequal_line_counts(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "a.es").write_text("uno\ndos\n", encoding="utf-8")
    message = _error({"dev": {"source": str(tmp_path / "a.en"), "reference": str(tmp_path / "a.es")}})
    assert message == (
        f"sweep.yaml: data.dev: {tmp_path / 'a.en'} has 3 lines but {tmp_path / 'a.es'} has 2; "
        "the files must be line-aligned"
    )


@pytest.mark.parametrize("form", ["plain", "tsv"])
def test_undecodable_bytes_give_the_line(tmp_path, form):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"source\ttarget\nok\tbien\ncaf\xe9\tcaf\xc3\xa9\n")
    data = {"dev": str(bad)} if form == "tsv" else {"dev": {"source": str(bad), "reference": str(bad)}}
    key = "data.dev" if form == "tsv" else "data.dev.source"
    assert _error(data) == f"sweep.yaml: {key}: {bad}: line 3 is not UTF-8 (b'\\xe9\\tca'); re-save the file as UTF-8"


def test_unknown_split_and_split_not_given():
    assert _error({"corpus": "bible-en-es"}, "valid") == (
        "sweep.yaml: split: unknown split 'valid'; valid: train, dev, test"
    )
    assert _error({"dev": str(DATA / "pairs.tsv")}, "test") == (
        "sweep.yaml: data.test: split 'test' is needed but not given; add data.test: PATH"
    )


def test_unreadable_table(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a", "target": \n', encoding="utf-8")
    assert _error({"dev": str(bad)}).startswith(f"sweep.yaml: data.dev: {bad}: cannot be read as jsonl (")


# --- validate_data ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"corpus": "bible-fr"}, "data.corpus: unknown corpus 'bible-fr'; valid: bible-en-es, bible-kjv-web"),
        ({"corpus": "bible-en-es", "dev": "x.tsv"}, "data.dev: not allowed with data.corpus"),
        ({"dev": "x.tsv", "sorce_field": "en"}, "data.sorce_field: unknown key; valid keys: corpus, dev,"),
        ({"source": "dev.en"}, "data.reference: missing; data.source and data.reference go together"),
        ({"dev": "pairs.tsv", "format": "parquet"}, "data.format: unknown format 'parquet'; valid: tsv, csv, jsonl"),
        ({"dev": "dev.en"}, "data.dev: cannot infer the format of"),
        ({"dev": {"source": "dev.en", "reference": "dev.es"}, "source_field": "en"}, "data.source_field: only applies"),
        ({"dev": {"source": "dev.en", "reference": "dev.es", "lang": "es"}}, "data.dev.lang: unknown key"),
        ({}, "data: must be a mapping"),
    ],
)
def test_validate_data_errors(data, expected, monkeypatch):
    monkeypatch.chdir(DATA)
    with pytest.raises(DataError) as info:
        validate_data(data, "sweep.yaml")
    assert str(info.value).startswith(f"sweep.yaml: {expected}")


def test_validate_data_accepts_every_form(monkeypatch):
    monkeypatch.chdir(DATA)
    for data in (
        {"corpus": "bible-kjv-web"},
        {"train": "pairs.tsv", "dev": "pairs.csv", "test": "pairs.jsonl", "source_field": "en", "target_field": "es"},
        {"dev": {"source": "dev.en", "reference": "dev.es"}},
        {"source": "dev.en", "reference": "dev.es"},
    ):
        validate_data(data)
