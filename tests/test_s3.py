"""A sweep stored on S3 (a local S3 server, fixture ``s3_server``): Ray writes it there, and ``rank``, ``plot``,
``export`` and ``resume`` work on its URI exactly as on a local run directory."""

from __future__ import annotations

import json

import pytest

from search.__main__ import main

SWEEP = """
method: grid
metric: {{name: bleu, goal: maximize}}
trainable: TOY:toy_train
parameters:
  lr: {{values: [0.05, 0.2, 0.3]}}
settings: {{steps: 3, sleep: 0, model_src: {model}}}
data: {{corpus: toy}}
"""


def _rows(capsys, run: str) -> list[tuple]:
    assert main(["rank", run, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    return [(r["params"], r["value"], r["status"], r["training_iteration"]) for r in rows]


def _files(directory) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in ("README.md", "best_hparams.yaml")  # they name the run and the trial
    }


@pytest.mark.ray
def test_a_sweep_on_s3_ranks_plots_exports_and_resumes_by_uri(
    ray_session, s3_server, write_spec, tiny_model, tmp_path, capsys, monkeypatch
):
    from search.spec import load_spec
    from search.storage import Remote
    from search.tune import run

    monkeypatch.setenv("SEARCH_CACHE", str(tmp_path / "cache"))
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    spec = load_spec(write_spec(SWEEP.format(model=tiny_model)))
    _, local_dir = run(spec, storage=str(tmp_path / "runs"), progress=False)
    _, remote_dir = run(spec, storage=s3_server.uri("runs"), progress=False)
    uri = str(remote_dir)
    assert isinstance(remote_dir, Remote) and uri == s3_server.uri("runs/sweep")
    assert not (tmp_path / "s3:").exists()

    # Ray wrote every trial's files and checkpoints to the bucket; nothing of the run is on the local disk
    keys = [info.path for info in remote_dir.files()]
    assert sum(k.endswith("/result.json") for k in keys) == 3
    assert sum(k.endswith("/hypotheses.txt") for k in keys) == 3  # the trainable's files reach the storage
    assert any("/checkpoint_000002/model/" in k for k in keys)

    # rank by URI gives the local run's table
    assert _rows(capsys, uri) == _rows(capsys, str(local_dir))

    # export by URI fetches the winner's checkpoint (only it) and writes the same model directory
    assert main(["export", uri, "--to", str(tmp_path / "from_s3")]) == 0
    assert main(["export", str(local_dir), "--to", str(tmp_path / "from_local")]) == 0
    capsys.readouterr()
    assert _files(tmp_path / "from_s3") == _files(tmp_path / "from_local") != {}
    mirror = tmp_path / "cache" / "runs" / "s3" / remote_dir.path
    fetched = [p for p in mirror.rglob("checkpoint_*/model/*") if p.is_file()]
    assert fetched and {p.parent.parent.parent for p in fetched} == {fetched[0].parent.parent.parent}

    # plots land beside the run on the storage
    assert main(["plot", uri]) == 0
    assert remote_dir.child("plots/curves.png").exists()

    # resume by URI: nothing left to run, every trial kept
    assert main(["resume", uri]) == 0
    capsys.readouterr()
    assert [row[2] for row in _rows(capsys, uri)] == ["TERMINATED"] * 3
