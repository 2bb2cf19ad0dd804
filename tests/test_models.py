"""search.models: spec checks, the cached BPE tokenizer, models built from a config, local model directories."""

from __future__ import annotations

import threading

import pytest
import torch

from search.errors import SpecError
from search.models import build as models
from search.models import build_model, cached_tokenizer, load_pretrained, tokenizer_cache_key, validate_model

TEXTS = [
    "In the beginning God created the heavens and the earth.",
    "En el principio creó Dios los cielos y la tierra.",
    "The earth was formless and empty; darkness was on the surface of the deep.",
    "Y la tierra estaba desordenada y vacía, y las tinieblas estaban sobre la haz del abismo.",
] * 20
TINY = {"arch": "bart", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 320}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ---------------------------------------------------------------- validate_model


@pytest.mark.parametrize(
    ("model", "key", "words"),
    [
        ({"arch": "lstm"}, "model.arch", "must be one of bart, marian, t5, got 'lstm'"),
        ({"d_model": 64}, "model.arch", "must be one of"),
        ({"arch": "bart", "hidden": 64}, "model.hidden", "unknown key; valid keys are arch, d_model"),
        ({"arch": "t5", "layers": 0}, "model.layers", "must be a positive integer, got 0"),
        ({"arch": "t5", "ffn": 1.5}, "model.ffn", "must be a positive integer, got 1.5"),
        ({"arch": "t5", "heads": True}, "model.heads", "must be a positive integer, got True"),
        ({"arch": "marian", "d_model": 100, "heads": 8}, "model.heads", "must divide d_model, got heads=8 d_model=100"),
        ({"arch": "bart", "vocab_size": 100}, "model.vocab_size", "must be >= 300"),
        ({"arch": "bart", "dropout": 1.5}, "model.dropout", "must be a number in [0, 1), got 1.5"),
        (42, "model", "must be a path, a Hub id or a mapping with 'arch', got int"),
    ],
)
def test_validate_model_rejects(model, key, words):
    with pytest.raises(SpecError) as err:
        validate_model(model, "exp.yaml")
    assert err.value.key == key
    assert words in str(err.value)
    assert str(err.value).startswith(f"exp.yaml: {key}: ")


def test_validate_model_paths(tmp_path):
    validate_model({"arch": "t5", "d_model": 64, "heads": 4}, "exp.yaml")
    with pytest.raises(SpecError, match="no such directory"):
        validate_model("./missing-model", str(tmp_path / "exp.yaml"))  # a bare name may be a Hub id
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="has no config.json"):
        validate_model("empty", str(tmp_path / "exp.yaml"))
    (tmp_path / "empty" / "config.json").write_text("{}")
    validate_model("empty", str(tmp_path / "exp.yaml"))  # relative to the spec file's directory
    validate_model(str(tmp_path / "empty"), "elsewhere/exp.yaml")


# ---------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("arch", ["bart", "t5"])
def test_tokenizer_round_trips_and_marks_sequences(tmp_path, arch):
    tok = cached_tokenizer(TEXTS, 320, arch, tmp_path)
    for text in [*TEXTS[:4], "¿Qué? ¡Sí! Ñandú — 3,14 «comillas»", "words never seen: xylophone"]:
        ids = tok(text)["input_ids"]
        assert ids[-1] == tok.eos_token_id == models.EOS_ID
        assert (ids[0] == tok.bos_token_id) == (arch == "bart")
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.pad_token_id, tok.unk_token_id) == (models.PAD_ID, models.UNK_ID)
    assert len(tok) == 320


def test_tokenizer_is_cached_by_content(tmp_path, monkeypatch):
    first = cached_tokenizer(TEXTS, 320, "bart", tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been reused")

    monkeypatch.setattr(models, "train_tokenizer", no_training)
    again = cached_tokenizer(list(TEXTS), 320, "bart", tmp_path)
    assert again.get_vocab() == first.get_vocab()
    with pytest.raises(AssertionError, match="reused"):
        cached_tokenizer(TEXTS + ["one more line"], 320, "bart", tmp_path)
    keys = {
        tokenizer_cache_key(TEXTS, 320, "bart"),
        tokenizer_cache_key(TEXTS, 330, "bart"),
        tokenizer_cache_key(TEXTS, 320, "t5"),
        tokenizer_cache_key(TEXTS[1:], 320, "bart"),
    }
    assert len(keys) == 4


def test_tokenizer_trained_once_by_concurrent_callers(tmp_path, monkeypatch):
    calls = []
    real = models.train_tokenizer

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(models, "train_tokenizer", counting)
    vocabs = []
    threads = [
        threading.Thread(target=lambda: vocabs.append(cached_tokenizer(TEXTS, 320, "t5", tmp_path).get_vocab()))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(vocabs) == 3 and vocabs[0] == vocabs[1] == vocabs[2]
    assert not [p for p in (tmp_path / "tokenizers").iterdir() if p.name.startswith(".tmp")]


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("arch", ["bart", "marian", "t5"])
def test_build_model_from_config_generates_and_reloads(tmp_path, arch):
    torch.manual_seed(0)
    model, tok = build_model({**TINY, "arch": arch}, lambda: TEXTS, cache_dir=tmp_path, dropout=0.2)
    config = model.config
    assert (config.pad_token_id, config.eos_token_id) == (models.PAD_ID, models.EOS_ID)
    assert getattr(config, "dropout_rate", getattr(config, "dropout", None)) == 0.2
    assert model.generation_config.max_length == 128
    assert model.generation_config.decoder_start_token_id == config.decoder_start_token_id
    model.eval()
    batch = tok(TEXTS[:2], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=6, max_length=None)
    assert out.shape[0] == 2 and out.shape[1] <= 7
    assert (out[:, 0] == config.decoder_start_token_id).all()

    model.save_pretrained(tmp_path / "saved")
    tok.save_pretrained(tmp_path / "saved")
    validate_model(str(tmp_path / "saved"), "exp.yaml")
    again, tok2 = build_model(str(tmp_path / "saved"), dropout=0.0)
    assert not again.training
    assert getattr(again.config, "dropout_rate", getattr(again.config, "dropout", None)) == 0.0
    assert torch.equal(again.generate(**batch, max_new_tokens=6, max_length=None), out)
    assert tok2("hola")["input_ids"] == tok("hola")["input_ids"]


def test_build_model_from_config_needs_texts(tmp_path):
    with pytest.raises(ValueError, match="needs training texts"):
        build_model(TINY, None, cache_dir=tmp_path)
    with pytest.raises(SpecError, match="model.arch"):
        build_model({"arch": "gpt"}, lambda: TEXTS, cache_dir=tmp_path)


def test_load_pretrained_keeps_saved_dropout(tmp_path):
    model, tok = build_model({**TINY, "dropout": 0.3}, lambda: TEXTS, cache_dir=tmp_path)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, _ = load_pretrained(tmp_path / "m")
    assert loaded.config.dropout == 0.3
