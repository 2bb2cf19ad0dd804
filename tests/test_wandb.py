"""W&B: one readable run per trial and a summary run with the ranked table, read back from the offline files.

wandb 0.31 writes and syncs its run files in Go (``wandb-core``) and ships no Python reader, so :func:`records` reads
the format itself: the LevelDB log format (github.com/google/leveldb, ``doc/log_format.md``) with W&B's 7-byte
file header (``:W&B``, magic 0xBEE1, version 0) and zlib's CRC-32 seeded with the record type, each record a
``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from search.report import rank
from search.spec import load_spec
from search.tune.wandb import NAME_LIMIT, SECTIONS_KEY, run_config, run_name

BLOCK = 32768  # bytes of a LevelDB log block; a record's header never straddles two
HEADER = struct.Struct("<IHB")  # masked checksum, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    """Every ``Record`` of a ``.wandb`` file, in the order written."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), path
    out, pos, parts = [], 7, b""
    while pos + HEADER.size <= len(data):
        if BLOCK - pos % BLOCK < HEADER.size:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        checksum, length, kind = HEADER.unpack_from(data, pos)
        if kind == 0:  # zeros: the end of what was written
            break
        chunk = data[pos + HEADER.size : pos + HEADER.size + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum, f"{path}: damaged record at byte {pos}"
        pos += HEADER.size + length
        parts = chunk if kind in (FULL, FIRST) else parts + chunk
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(parts)
            out.append(record)
    return out


def _put(into: dict, item) -> None:
    """Set a config or history item: its key is flat, or a path into the value (a logged table's ``path``, ...)."""
    *parents, last = item.nested_key or [item.key]
    for name in parents:
        into = into.setdefault(name, {})
    into[last] = json.loads(item.value_json)


def read_run(path: Path) -> dict:
    """The run's id, group, job type, name, config (every update applied) and logged history of one offline file."""
    run: dict = {"config": {}, "history": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(id=r.run_id, group=r.run_group, job_type=r.job_type, name=r.display_name)
            updates = r.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            for item in record.history.item:
                _put(run["history"], item)
            continue
        else:
            continue
        for item in updates:
            _put(run["config"], item)
    return run


def offline_runs(run_dir: Path) -> list[dict]:
    found = []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        found.append({**read_run(path), "files": path.parent / "files"})
    return found


SWEEP = """
method: grid
metric: {name: score, goal: maximize}
trainable: TOY:quadratic
wandb: {mode: offline, project: test}
parameters:
  x: {values: [1, 3, 4]}
  opt: {parameters: {offset: {value: 1}}}
settings: {steps: 2}
"""


@pytest.mark.ray
def test_offline_sweep_logs_a_run_per_trial_and_a_summary_with_the_ranked_table(run_sweep, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    _, run_dir = run_sweep(SWEEP)
    ranking = rank(run_dir)
    runs = offline_runs(run_dir)
    trials = {r["id"]: r for r in runs if r["job_type"] == "trial"}
    (summary,) = [r for r in runs if r["job_type"] == "summary"]
    assert len(runs) == 4 and set(trials) == {row.trial_id for row in ranking.rows}
    assert {r["group"] for r in runs} == {run_dir.name}
    for row in ranking.rows:
        run = trials[row.trial_id]
        assert run["name"] == f"{row.trial_id} x={row.params['x']}"
        # the parameters at the top level by name, the user's sections under one key, no internal settings
        assert {run["config"]["x"], run["config"]["opt.offset"]} == {row.params["x"], 1}
        assert run["config"][SECTIONS_KEY]["settings"] == {"steps": 2}
        assert not {"settings", "cache_dir", "spec_file"} & set(run["config"])
        assert run["history"]["score"] == pytest.approx(row.value)
    table = summary["history"]["ranking"]
    content = json.loads((summary["files"] / table["path"]).read_text())
    assert content["columns"] == ["score", "x", "trial_id", "status", "training_iteration", "error"]
    expected = [[r.value, r.params["x"], r.trial_id, r.status, r.training_iteration, r.error] for r in ranking.rows]
    assert content["data"] == expected
    assert [v for v, *_ in content["data"]] == sorted((r.value for r in ranking.rows), reverse=True)
    # each trial reported twice: the metric curves are the plot, stored beside the run
    assert summary["history"]["plots/curves"]["_type"] == "image-file"
    assert (summary["files"] / summary["history"]["plots/curves"]["path"]).is_file()


def test_a_run_is_named_by_its_trial_and_searched_values_within_the_limit():
    assert run_name("a1b2c_00001", {"lr": 0.000123456, "num_beams": 5}) == "a1b2c_00001 lr=0.0001235 num_beams=5"
    long = run_name("a1b2c_00001", {f"parameter_{i}": 0.5 for i in range(9)})
    assert len(long) == NAME_LIMIT and long.endswith("…") and long.startswith("a1b2c_00001 parameter_0=0.5")


def test_a_trials_config_holds_its_parameters_and_only_the_users_sections(write_spec):
    spec = load_spec(write_spec(SWEEP.replace("offset: {value: 1}", "offset: {values: [1, 2]}")))
    config = {"x": 4, "opt": {"offset": 2}, "settings": {"steps": 2, "cache_dir": "/tmp/c", "spec_file": "s.yaml"}}
    assert run_config(config, spec) == {
        "x": 4, "opt.offset": 2, SECTIONS_KEY: {"trainable": spec.trainable, "settings": {"steps": 2}},
    }  # fmt: skip


@pytest.mark.ray
def test_runs_are_grouped_by_wandb_group_else_the_run_directorys_name(ray_session, write_spec, tmp_path, monkeypatch):
    from search.tune.wandb import WandbCallback

    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    spec = load_spec(write_spec(SWEEP))
    for group, expected in ((None, "sweep-2"), ("mine", "mine")):
        callback = WandbCallback(spec, tmp_path / "sweep-2", project="test", group=group, mode="offline", dir="x")
        callback.setup()
        assert callback.group == expected
