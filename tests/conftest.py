"""Shared fixtures. ``ray.init`` takes ~10 s here, so every integration test shares one Ray session.

Plain data (reference sentences, their translations) lives in tests/helpers.py, which the toy trainables import too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_REFERENCES

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The local S3 server of the storage tests takes any credentials; Ray's workers (started with this environment by the
# shared session) need some to reach it, and must not ask a cloud metadata service for them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray session (2 CPUs) for every integration test."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def one_torch_thread():
    """torch on one thread for the test (exact comparisons and step counts must not depend on the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TOY = Path(__file__).resolve().parent / "toy_trainables.py"


@pytest.fixture()
def write_spec(tmp_path) -> Callable[[str], Path]:
    """``write_spec(text)`` writes ``tmp_path/sweep.yaml``, ``TOY`` in the text standing for tests/toy_trainables.py."""

    def write(text: str) -> Path:
        path = tmp_path / "sweep.yaml"
        path.write_text(text.replace("TOY", str(TOY)))
        return path

    return write


@pytest.fixture()
def run_sweep(ray_session, write_spec, tmp_path) -> Callable[[str], tuple[Any, Path]]:
    """``run_sweep(text)`` runs the sweep ``write_spec(text)`` wrote (storage ``tmp_path/runs``): (results, run_dir)."""
    from search.spec import load_spec
    from search.tune import run

    def run_text(text: str) -> tuple[Any, Path]:
        return run(load_spec(write_spec(text)), storage=str(tmp_path / "runs"), progress=False)

    return run_text


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer BART with its tokenizer, saved as a model directory."""
    import torch

    from search.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    model, tokenizer = build_model(
        {"arch": "bart", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 300, "max_length": 32},
        lambda: TOY_REFERENCES,
        cache_dir=root / "cache",
    )
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model"


class Figures:
    """The matplotlib Figures saved while a test ran, each with the bytes it wrote, to read what a PNG file shows."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, bytes]] = []

    def of(self, png: str | Path) -> Any:
        """The Figure that drew the file ``png`` (its bytes are what that figure saved): read its axes, not pixels."""
        data = Path(png).read_bytes()
        drew = [figure for figure, saved in self.saved if saved == data]
        assert drew, f"{png}: none of the {len(self.saved)} figures saved in this test wrote it"
        return drew[-1]


@pytest.fixture()
def figures(monkeypatch) -> Figures:
    """Records every ``Figure.savefig`` (to a path or to an in-memory buffer) during the test."""
    from matplotlib.figure import Figure

    recorded = Figures()
    savefig = Figure.savefig

    def record(self: Figure, fname, *args, **kwargs):
        result = savefig(self, fname, *args, **kwargs)
        recorded.saved.append((self, fname.getvalue() if hasattr(fname, "getvalue") else Path(fname).read_bytes()))
        return result

    monkeypatch.setattr(Figure, "savefig", record)
    return recorded


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a loopback port with one bucket (tests/cluster.py: ``S3Server``); stopped at the end."""
    from cluster import start_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_node_cluster(s3_server, tmp_path_factory):
    """A head and a worker Ray node that share no disk, both with ``s3_server``'s environment (tests/cluster.py)."""
    from cluster import TwoNodeCluster

    with TwoNodeCluster(env=s3_server.env, log_dir=tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
