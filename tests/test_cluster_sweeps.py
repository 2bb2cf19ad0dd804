"""Sweeps on a real two-node cluster whose nodes share no disk (tests/cluster.py), stored on S3: trials run on both
nodes, each beam pass is decoded once, ``rank`` and ``export`` on the head give what a one-node run gives, and a
node killed mid-sweep costs no finished trial while its trials continue from their checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cluster import HEAD_IP, SEARCH, WORKER_IP

from search.__main__ import main
from search.rundir import read_run
from search.spec import trial_config
from search.storage import Remote

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "experiments" / "models" / "bible-en-es-small"
DECODE_GRID = [
    "parameters.num_beams={values: [1, 2, 3]}",
    "parameters.length_penalty={values: [0.6, 1.0]}",
    "parameters.early_stopping={values: [true, false]}",
    "settings.limit=16",
]


@pytest.fixture(autouse=True)
def _s3_env(s3_server, monkeypatch, tmp_path):
    """The pytest process reads the bucket too (the one-node runs, and checking what the cluster wrote)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SEARCH_CACHE", str(tmp_path / "cache"))


def _on_head(cluster, *argv: str, timeout: float = 900) -> str:
    proc = cluster.run_on_head([SEARCH, *argv], timeout=timeout)
    assert proc.returncode == 0, f"search {' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


def _cluster_run(cluster, s3_server, name: str, *args: str) -> str:
    _on_head(cluster, "run", *args, "--address", cluster.address, "--storage", s3_server.uri("cluster"), "--name", name)
    return s3_server.uri(f"cluster/{name}")


def _local_run(name: str, file: str, tmp_path: Path, sets: list[str], smoke_test: bool) -> Path:
    from search.spec import load_spec
    from search.tune import run

    spec = load_spec(file, smoke_test=smoke_test, overrides=sets)
    return run(spec, storage=str(tmp_path / "one-node"), name=name, progress=False)[1]


def _table(run: str | Path) -> list[tuple]:
    from search.report import format_ranking, rank

    rows = json.loads(format_ranking(rank(run), "json"))["rows"]
    return [(json.dumps(r["params"], sort_keys=True), r["value"], r["status"]) for r in rows]


def _nodes(uri: str) -> set[str]:
    return {t.last_result.get("node_ip") for t in read_run(uri).trials()}


def test_a_decode_grid_decodes_each_pass_once_across_nodes_and_ranks_as_on_one_node(
    ray_session, two_node_cluster, s3_server, tmp_path
):
    cluster = two_node_cluster
    Remote.parse(s3_server.uri("models/small")).upload(MODEL, sorted(p for p in MODEL.iterdir() if p.is_file()))
    sets = [*DECODE_GRID, "settings.batch_size=8"]
    file = str(REPO / "experiments" / "decode_seed_grid.yaml")
    remote_sets = [f"model={s3_server.uri('models/small')}", *sets]  # read from S3 by every node
    uri = _cluster_run(cluster, s3_server, "decode", file, *[a for s in remote_sets for a in ("--set", s)])

    run = read_run(uri)
    trials = run.trials()
    assert len(trials) == 12 and {t.status for t in trials} == {"TERMINATED"}
    assert _nodes(uri) == {HEAD_IP, WORKER_IP}  # trials ran on both machines
    # one beam pass per num_beams (greedy for 1); the decode grid's combinations sit under trial_config's grid key
    passes = {trial_config(t.config, run.spec.parameters)["num_beams"] for t in trials}
    decoded = [t for t in trials if not t.last_result["from_cache"]]
    assert len(decoded) == len(passes) == 3, [(t.config, t.last_result["node_ip"]) for t in decoded]

    local = _local_run("decode", file, tmp_path, [f"model={MODEL}", *sets], smoke_test=False)
    assert sorted(_table(uri)) == sorted(_table(local))  # configs that decode alike tie, in any order

    # rank and export on the head, by URI: the head's table, and the winner's generate() defaults
    head_table = json.loads(_on_head(cluster, "rank", uri, "--format", "json"))["rows"]
    assert sorted((json.dumps(r["params"], sort_keys=True), r["value"]) for r in head_table) == sorted(
        row[:2] for row in _table(local)
    )
    cluster.head.put(MODEL, "/tmp/export-decode")
    _on_head(cluster, "export", uri, "--to", "/tmp/export-decode")
    (tmp_path / "export-local").mkdir()
    for f in MODEL.iterdir():
        (tmp_path / "export-local" / f.name).write_bytes(f.read_bytes())
    assert main(["export", str(local), "--to", str(tmp_path / "export-local")]) == 0
    exported = json.loads(cluster.head.path("/tmp/export-decode/generation_config.json").read_text())
    assert exported == json.loads((tmp_path / "export-local" / "generation_config.json").read_text())


def test_a_finetune_asha_sweep_runs_on_both_nodes_and_exports_on_the_head(
    ray_session, two_node_cluster, s3_server, tmp_path
):
    cluster = two_node_cluster
    file = str(REPO / "experiments" / "finetune_asha.yaml")
    sets = ["run_cap=4", "max_concurrent=2"]
    uri = _cluster_run(cluster, s3_server, "finetune", file, "--smoke-test", *[a for s in sets for a in ("--set", s)])
    assert _nodes(uri) == {HEAD_IP, WORKER_IP}
    local = _local_run("finetune", file, tmp_path, sets, smoke_test=True)
    cluster_table, local_table = _table(uri), _table(local)
    assert len(cluster_table) == len(local_table) == 4
    names = {tuple(sorted(json.loads(row[0]))) for row in cluster_table + local_table}
    assert len(names) == 1  # the same searched parameters, every trial with a value
    assert all(isinstance(row[1], float) for row in cluster_table + local_table)

    _on_head(cluster, "export", uri, "--to", "/tmp/export-finetune")
    assert main(["export", str(local), "--to", str(tmp_path / "export-finetune")]) == 0
    head_files = sorted(p.name for p in cluster.head.path("/tmp/export-finetune").iterdir())
    assert head_files == sorted(p.name for p in (tmp_path / "export-finetune").iterdir())
    assert "model.safetensors" in head_files and "best_hparams.yaml" in head_files


KILL_SWEEP = """
method: grid
metric: {name: value, goal: maximize}
trainable: /work/main/tests/toy_trainables.py:counter
resources: {cpu: 1}
parameters: {lr: {values: [0.1, 0.2, 0.3, 0.4]}}
settings: {steps: 8, sleep: 1.5}
"""


def _worker_trial_with_checkpoint(uri: str) -> bool:
    """Whether a trial on the worker node has reported (and checkpointed) at least twice."""
    try:
        trials = read_run(uri).trials()
    except Exception:  # nothing recorded yet
        return False
    return any(
        t.status == "RUNNING" and t.last_result.get("node_ip") == WORKER_IP and len(t.history()) >= 2 for t in trials
    )


def test_a_node_killed_mid_sweep_loses_no_finished_trial_and_its_trials_continue_from_checkpoints(
    ray_session, two_node_cluster, s3_server, tmp_path
):
    cluster = two_node_cluster
    spec = cluster.head.path("/tmp/kill.yaml")
    spec.write_text(KILL_SWEEP.replace("/work/main", str(REPO)))
    uri = s3_server.uri("cluster/kill")
    storage = s3_server.uri("cluster")
    driver = cluster.popen_on_head(
        [SEARCH, "run", "/tmp/kill.yaml", "--address", cluster.address, "--storage", storage, "--name", "kill"],
        stdout=open(tmp_path / "driver.out", "w"), stderr=open(tmp_path / "driver.err", "w"),  # noqa: SIM115
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not _worker_trial_with_checkpoint(uri):
        assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.err").read_text()[-3000:]
        time.sleep(1)
    cluster.kill_worker_raylet()
    assert driver.wait(timeout=600) == 0, (tmp_path / "driver.err").read_text()[-3000:]

    trials = read_run(uri).trials()
    assert [t.status for t in trials] == ["TERMINATED"] * 4
    for t in trials:
        history = t.history()
        assert history[-1]["value"] == pytest.approx(8 * t.config["lr"])
        steps = [r["step"] for r in history]
        assert sorted(set(steps)) == list(range(1, 9))
    moved = [t for t in trials if {r["node_ip"] for r in t.history()} == {HEAD_IP, WORKER_IP}]
    assert moved, "no trial was running on the worker when it died"
    for t in moved:  # continued on the head from the checkpoint the worker had written to S3
        assert t.last_result["started"] > 0 and t.last_result["node_ip"] == HEAD_IP
    for t in trials:
        if t not in moved:  # finished on one node: ran once, every step reported once
            assert [r["step"] for r in t.history()] == list(range(1, 9))
    cluster.restart_worker()
