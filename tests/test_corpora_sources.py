"""Data from a saved dataset, a Hub dataset in the datasets cache, and a sacreBLEU test set in sacreBLEU's cache
(search/corpora/hub_datasets.py, search/corpora/sacrebleu_sets.py), all offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from search.corpora import load_pairs, validate_data
from search.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def rows(n: int, tag: str) -> dict:
    return {"translation": [{"de": f"hallo {tag} {i}", "en": f"hello {tag} {i}"} for i in range(n)]}


def one_line(data: dict, split: str = "dev") -> str:
    with pytest.raises(DataError) as err:
        load_pairs(data, split, "sweep.yaml")
    assert "\n" not in str(err.value)
    return str(err.value)


# --- save_to_disk ----------------------------------------------------------------------------------------------


def test_a_saved_dataset_dict_maps_our_splits_and_fields(tmp_path):
    saved = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"src": ["a", "b", "c"], "tgt": ["x", "y", "z"]}),
            "validation": datasets.Dataset.from_dict({"src": ["d"], "tgt": ["w"]}),
            "newstest": datasets.Dataset.from_dict({"src": ["e", "f"], "tgt": ["v", "u"]}),
        }
    )
    saved.save_to_disk(tmp_path / "saved")
    data = {"disk": str(tmp_path / "saved"), "source_field": "src", "target_field": "tgt"}
    validate_data(data)
    assert load_pairs(data, "train").sources == ["a", "b", "c"]
    dev = load_pairs(data, "dev")
    assert (dev.sources, dev.references, dev.name) == (["d"], ["w"], "saved/validation")
    renamed = load_pairs({**data, "split": {"test": "newstest"}}, "test", limit=1)
    assert (renamed.sources, renamed.references) == (["e"], ["v"])
    assert "has no split 'test' for our test; its splits: train, validation, newstest" in one_line(data, "test")
    assert "data.source_field: saved/train has no field 'source'" in one_line({"disk": data["disk"]}, "train")


def test_a_saved_dataset_serves_every_split_and_reads_a_translation_pair(tmp_path):
    datasets.Dataset.from_dict(rows(3, "d")).save_to_disk(tmp_path / "one")
    data = {"disk": str(tmp_path / "one"), "pair": "de-en"}
    for split in ("train", "dev", "test"):
        pairs = load_pairs(data, split)
        assert pairs.sources[0] == "hallo d 0" and pairs.references[2] == "hello d 2"
    assert "has no language 'fr'; it has de, en" in one_line({**data, "pair": "fr-en"})
    assert "holds one Dataset, which serves every split; remove it" in one_line({**data, "split": "train"})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"disk": "nowhere"}, "data.disk: nowhere: no such directory; give a directory written by save_to_disk"),
        ({"disk": ".", "config": "x"}, "data.config: unknown key; valid keys: disk, pair, source_field, split, "),
        ({"disk": ".", "pair": "de"}, "data.pair: must be SOURCE-TARGET language codes like de-en, got 'de'"),
        ({"disk": ".", "pair": "de-en", "source_field": "x"}, "data.source_field: not allowed with data.pair"),
        ({"disk": ".", "split": {"valid": "x"}}, "data.split.valid: unknown split; valid: train, dev, test"),
        ({"disk": ".", "hub": "x"}, "data.disk: not allowed with data.hub; give one data source"),
        ({"dev": "x.tsv", "langpair": "de-en"}, "data.langpair: unknown key; valid keys: corpus, dev, "),
    ],
)
def test_bad_dataset_sections_fail_in_one_line(tmp_path, data, expected):
    with pytest.raises(DataError) as err:
        validate_data(data, "sweep.yaml")
    assert str(err.value).startswith(f"sweep.yaml: {expected}")


# --- the Hub, from the datasets cache --------------------------------------------------------------------------


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch) -> Path:
    """``org/tiny`` (config de-en: train 3 rows, validation 2) in an offline datasets cache, where an online
    ``load_dataset("org/tiny", "de-en")`` leaves it: ``org___tiny/de-en/0.0.0/<hash>/`` with the prepared Arrow files
    and dataset_info.json. It is prepared by datasets' own parquet builder (the one Hub parquet datasets use), then
    put under the Hub dataset's name. What this proves: offline, load_dataset by name finds it as it finds a
    dataset an online load cached, and our splits, pair and errors work through that path."""
    from datasets import config
    from datasets.packaged_modules.parquet.parquet import Parquet
    from huggingface_hub import constants

    files = {}
    for split, n in (("train", 3), ("validation", 2)):
        files[split] = str(tmp_path / f"{split}.parquet")
        datasets.Dataset.from_dict(rows(n, split)).to_parquet(files[split])
    builder = Parquet(
        cache_dir=str(tmp_path / "build"), dataset_name="tiny", config_name="de-en", hash="0" * 16, data_files=files
    )
    builder.download_and_prepare()
    cache = tmp_path / "datasets"
    (cache / "org___tiny" / "de-en").mkdir(parents=True)
    shutil.move(Path(builder.cache_dir).parent, cache / "org___tiny" / "de-en" / "0.0.0")
    for module, name in ((config, "HF_HUB_OFFLINE"), (constants, "HF_HUB_OFFLINE")):
        monkeypatch.setattr(module, name, True)
    monkeypatch.setattr(config, "HF_DATASETS_CACHE", str(cache))
    return cache


def test_a_hub_dataset_loads_offline_from_the_datasets_cache(datasets_cache):
    data = {"hub": "org/tiny", "config": "de-en", "pair": "de-en"}
    validate_data(data)
    dev = load_pairs(data, "dev")
    assert (dev.sources, dev.references, dev.name) == (["hallo validation 0", "hallo validation 1"],
                                                       ["hello validation 0", "hello validation 1"],
                                                       "org/tiny/validation")  # fmt: skip
    assert load_pairs({**data, "split": "train"}, "test").sources[2] == "hallo train 2"
    reverse = load_pairs({**data, "pair": "en-de"}, "train", limit=1)
    assert (reverse.sources, reverse.references) == (["hello train 0"], ["hallo train 0"])
    assert "data.split: org/tiny has no split 'test' for our test; its splits: train, validation" in one_line(
        data, "test"
    )
    assert "data.hub: 'org/tiny' does not load (ValueError: Couldn't find cache for org/tiny for config 'fr-en'" in (
        one_line({**data, "config": "fr-en"})
    )
    missing = one_line({"hub": "org/none"})
    assert missing.startswith("sweep.yaml: data.hub: 'org/none' does not load (ConnectionError")
    assert f"HF_DATASETS_CACHE={datasets_cache}" in missing


# --- sacreBLEU ----------------------------------------------------------------------------------------------------


def test_sacrebleu_sections_are_checked_against_its_test_sets():
    validate_data({"sacrebleu": "wmt19", "langpair": "ru-en"})
    cases = [
        (
            {"sacrebleu": "wmt91", "langpair": "ru-en"},
            "data.sacrebleu: unknown sacreBLEU test set 'wmt91'; did you mean",
        ),
        ({"sacrebleu": "wmt19", "langpair": "ru-xx"}, "data.langpair: wmt19 has no language pair 'ru-xx'; it offers: "),
        ({"sacrebleu": "wmt19"}, "data.langpair: missing; wmt19 needs one of: "),
        ({"sacrebleu": "wmt19", "langpair": "ru-en", "split": "x"}, "data.split: unknown key; valid keys: langpair, "),
    ]
    for data, expected in cases:
        with pytest.raises(DataError) as err:
            validate_data(data, "sweep.yaml")
        assert str(err.value).startswith(f"sweep.yaml: {expected}"), str(err.value)
    assert "ru-en" in str(pytest.raises(DataError, validate_data, {"sacrebleu": "wmt19", "langpair": "x"}).value)


def test_a_sacrebleu_test_set_reads_from_its_cache(tmp_path):
    """wmt19 ru-en written where sacreBLEU leaves a set after download and extraction ($SACREBLEU/wmt19/
    wmt19.ru-en.<field>, one file per field its API names); sacreBLEU reads $SACREBLEU at import, so the reading
    runs in a fresh interpreter with the variable set. Also: train is refused, and a set not in the cache fails
    in one line (its download cannot reach the network here; sacreBLEU's own download is what fails)."""
    import sacrebleu

    fields = sacrebleu.DATASETS["wmt19"].fieldnames("ru-en")
    texts = {"src": ["Привет мир", "Как дела"], "ref": ["Hello world", "How are you"]}
    (tmp_path / "wmt19").mkdir()
    for field in fields:
        lines = texts.get(field, ["doc-1", "doc-1"])
        (tmp_path / "wmt19" / f"wmt19.ru-en.{field}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    script = """
import json, sys
from search.corpora import load_pairs
from search.errors import DataError
out = {}
for split in ("dev", "test", "train"):
    try:
        pairs = load_pairs({"sacrebleu": "wmt19", "langpair": sys.argv[1]}, split, "sweep.yaml")
        out[split] = [pairs.sources, pairs.references, pairs.name]
    except DataError as error:
        out[split] = str(error)
print(json.dumps(out))
"""
    env = {**os.environ, "SACREBLEU": str(tmp_path)}

    def read(langpair: str) -> dict:
        done = subprocess.run([sys.executable, "-c", script, langpair], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=True)  # fmt: skip
        return json.loads(done.stdout.strip().splitlines()[-1])

    out = read("ru-en")
    assert out["dev"] == out["test"] == [texts["src"], texts["ref"], "sacrebleu:wmt19/ru-en"]
    assert out["train"].startswith("sweep.yaml: data.sacrebleu: sacreBLEU serves test sets only, no train split")
    missing = read("de-en")["dev"]
    assert missing.startswith("sweep.yaml: data.sacrebleu: wmt19 de-en is not in the sacreBLEU cache SACREBLEU=")
    assert "`sacrebleu -t wmt19 -l de-en --echo src`" in missing
