"""Models named by their Hub id (search/models/hub.py), offline from a temporary Hub cache in the cache's own layout:
``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<file>`` symlinks to the blobs, ``refs/<branch>`` holding
the commit. What this proves: the id resolves as ``from_pretrained`` resolves it (HF_HUB_CACHE, HF_HUB_OFFLINE=1,
branches and commit hashes), validation needs no weights, and a decode trial runs by id."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from search.errors import SpecError
from search.models import HubModel, build_model, check_loadable, locate_model, validate_model

TEXTS = ["the earth was empty", "la tierra estaba vacía", "in the beginning", "en el principio"] * 20
TINY = {"arch": "bart", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 320}
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline. huggingface_hub reads the variables when imported, so its constants are set too."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def saved_model(directory: Path, seed: int) -> Path:
    """A tiny BART and its tokenizer written by save_pretrained."""
    torch.manual_seed(seed)
    model, tokenizer = build_model(TINY, lambda: TEXTS, cache_dir=directory / "tok")
    model.save_pretrained(directory / "model")
    tokenizer.save_pretrained(directory / "model")
    return directory / "model"


def put_in_cache(cache: Path, repo_id: str, model_dir: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> None:
    """Write ``model_dir`` into the Hub cache as ``hf download`` does: blobs by content hash, snapshot symlinks."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in model_dir.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        link = repo / "snapshots" / commit / file.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny models with different weights, saved once for the module."""
    root = tmp_path_factory.mktemp("models")
    return saved_model(root / "a", 0), saved_model(root / "b", 1)


@pytest.fixture
def two_revisions(hub_cache, saved_models) -> tuple[Path, Path]:
    """``org/tiny``: main and tag v1 at commit A, branch v2 at commit B (another model)."""
    a, b = saved_models
    put_in_cache(hub_cache, "org/tiny", a, COMMIT_A, ("main", "v1"))
    put_in_cache(hub_cache, "org/tiny", b, COMMIT_B, ("v2",))
    return a, b


def first_weight(model) -> torch.Tensor:
    return next(model.parameters()).detach()


def test_parse_tells_hub_ids_from_paths():
    assert HubModel.parse("Helsinki-NLP/opus-mt-en-de") == HubModel("Helsinki-NLP/opus-mt-en-de")
    assert HubModel.parse("org/name@refs/pr/1") == HubModel("org/name", "refs/pr/1")
    assert str(HubModel("org/name", "v2")) == "org/name@v2"
    for path in ("./m", "/abs/m", "~/m", "a/b/c", "bad name", 3):
        assert HubModel.parse(path) is None


def test_a_local_directory_wins_over_a_hub_id(tmp_path):
    (tmp_path / "org" / "tiny").mkdir(parents=True)
    assert locate_model("org/tiny", tmp_path) == str(tmp_path / "org" / "tiny")
    assert locate_model("org/other", tmp_path) == "org/other"
    assert locate_model("./org/other", tmp_path) == str(tmp_path / "org" / "other")


def test_a_cached_hub_model_validates_loads_and_picks_its_revision(two_revisions):
    a, b = two_revisions
    validate_model("org/tiny", "exp.yaml")
    check_loadable("org/tiny", "exp.yaml")
    expected = {}
    for name, directory in (("a", a), ("b", b)):
        model, _ = build_model(str(directory))
        expected[name] = first_weight(model)
    assert not torch.equal(expected["a"], expected["b"])
    for ref, which in (("org/tiny", "a"), ("org/tiny@v1", "a"), ("org/tiny@v2", "b"), (f"org/tiny@{COMMIT_B}", "b")):
        validate_model(ref, "exp.yaml")
        model, tokenizer = build_model(ref)
        assert torch.equal(first_weight(model), expected[which]), ref
        assert tokenizer("hola")["input_ids"][-1] == tokenizer.eos_token_id


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("org/missing", "'org/missing' is no local directory and not in the Hub cache HF_HUB_CACHE="),
        ("org/tiny@v3", "revision 'v3' of org/tiny is not in the Hub cache HF_HUB_CACHE="),
        ("org/tiny@" + "c" * 40, "(cached: main, v1, v2, " + COMMIT_A),
        ("./org/tiny", "must be a local model directory or a Hub id org/name, got './org/tiny' (no such directory)"),
        ("org/a/b", "(no such directory)"),
    ],
)
def test_unresolvable_ids_fail_in_one_line(two_revisions, model, words):
    with pytest.raises(SpecError) as err:
        validate_model(model, "exp.yaml")
    message = str(err.value)
    assert message.startswith("exp.yaml: model: ") and "\n" not in message
    assert words in message
    if "Hub cache" in words:
        assert "run `hf download org/" in message and "unset HF_HUB_OFFLINE" in message


def test_a_snapshot_without_config_is_refused(hub_cache, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "README.md").write_text("no model here")
    put_in_cache(hub_cache, "org/card-only", tmp_path / "m", COMMIT_A)
    with pytest.raises(SpecError, match="cached snapshot .* has no config.json"):
        validate_model("org/card-only", "exp.yaml")


def test_online_without_network_fails_in_one_line(hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(SpecError, match=r"model: org/missing is not in the Hub cache .* the Hub \(http://127.0.0.1:9\) "
                       r"cannot be reached \(.*\); check the network"):  # fmt: skip
        validate_model("org/missing", "exp.yaml")


def test_decode_by_hub_id(two_revisions, tmp_path):
    from search.trainables.decode import decode_and_score
    from search.trainables.decode_config import prepare

    settings = prepare({"limit": 4, "batch_size": 4, "max_new_tokens": 5, "cache_dir": str(tmp_path / "c")}, {})
    config = {"model": "org/tiny@v2", "data": {"corpus": "bible-en-es"}, "settings": settings, "num_beams": 2}
    metrics, hypotheses, references, _ = decode_and_score(config)
    assert metrics["sentences"] == len(hypotheses) == len(references) == 4
    local, _, _, _ = decode_and_score({**config, "model": str(two_revisions[1])})
    assert local["bleu"] == metrics["bleu"] and local["chrf"] == metrics["chrf"]
    other, _, _, _ = decode_and_score({**config, "model": "org/tiny"})
    assert not other["from_cache"]  # another revision is another model: its own pass, not v2's cached one
