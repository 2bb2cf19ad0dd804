"""Remote storage (search.storage): URIs, filesystem options, the local mirror of a run. Ray-free: the "remote"
here is a pyarrow filesystem over a local directory; tests/test_s3.py runs sweeps on a local S3 server."""

from __future__ import annotations

import os
import time

import pyarrow.fs as pafs
import pytest

from search import storage
from search.checks import require_storage
from search.errors import SpecError
from search.storage import Remote, is_uri, mirror_dir


@pytest.fixture()
def fake_remote(tmp_path, monkeypatch):
    """``s3://bkt/...`` served by a local directory (``tmp_path/remote``) through pyarrow's filesystem API."""
    root = tmp_path / "remote"
    root.mkdir()
    fs = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
    monkeypatch.setattr(storage, "_filesystem", lambda scheme, options: fs)
    monkeypatch.setenv("SEARCH_CACHE", str(tmp_path / "cache"))
    return root


def test_uris_and_paths():
    assert [is_uri(x) for x in ("s3://b/p", "gs://b", "file:///tmp/x", "./runs", "/a/b", "C:x")] == [
        True, True, False, False, False, False,
    ]  # fmt: skip
    remote = Remote.parse("s3://bkt/runs/sweep/?endpoint_override=127.0.0.1:9000&scheme=http", {"region": "x"})
    assert (remote.uri, remote.path, remote.name, remote.parent.uri) == (
        "s3://bkt/runs/sweep", "bkt/runs/sweep", "sweep", "s3://bkt/runs",
    )  # fmt: skip
    assert dict(remote.options) == {"endpoint_override": "127.0.0.1:9000", "scheme": "http", "region": "x"}
    assert remote.child("a/b").options == remote.options


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("s4://bkt/runs", "unknown storage scheme 's4'"),
        ("s3://", "names no bucket"),
        ("s3:/bkt/runs", "looks like a URI missing '//'"),
        ("", "must be a directory path or a URI"),
    ],
)
def test_bad_storage_is_one_line(value, message):
    with pytest.raises(SpecError, match=message) as info:
        require_storage(value, "sweep.yaml", "storage")
    assert str(info.value).startswith("sweep.yaml: storage: ") and "\n" not in str(info.value)


def _s3_options(fs: pafs.S3FileSystem) -> dict:
    return fs.__reduce__()[1][0] if isinstance(fs.__reduce__()[1][0], dict) else dict(fs.__reduce__()[1][0])


def test_s3_options_come_from_the_spec_then_the_uri_then_the_environment(monkeypatch):
    """pyarrow's S3FileSystem does not read AWS_ENDPOINT_URL; we do, and the spec's options win over it."""
    storage._filesystem.cache_clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    from_env = Remote.parse("s3://bkt/runs").fs
    assert (from_env.region, "127.0.0.1:9999" in repr(from_env.__reduce__())) == ("eu-west-3", True)
    assert "'http'" in repr(from_env.__reduce__())
    from_spec = Remote.parse("s3://bkt/runs?region=us-west-2", {"endpoint_override": "10.0.0.1:9000"}).fs
    assert from_spec.region == "us-west-2"
    assert "10.0.0.1:9000" in repr(from_spec.__reduce__()) and "9999" not in repr(from_spec.__reduce__())
    storage._filesystem.cache_clear()


def test_mirror_downloads_new_and_changed_files_and_forgets_deleted_ones(fake_remote, tmp_path):
    run = fake_remote / "bkt" / "runs" / "sweep"
    (run / "t1" / "checkpoint_000001").mkdir(parents=True)
    (run / "search_spec.yaml").write_text("a")
    (run / "t1" / "result.json").write_text("{}\n")
    (run / "t1" / "checkpoint_000001" / "model.bin").write_bytes(b"w" * 100)
    remote = Remote.parse("s3://bkt/runs/sweep")
    local = mirror_dir(remote)
    assert local == tmp_path / "cache" / "runs" / "s3" / "bkt" / "runs" / "sweep"

    def lazy(rel: str) -> bool:
        return "checkpoint_" in rel

    assert sorted(remote.mirror(local, lazy=lazy)) == ["search_spec.yaml", "t1/result.json"]
    assert (local / "t1" / "checkpoint_000001").is_dir() and not (local / "t1/checkpoint_000001/model.bin").exists()
    assert remote.mirror(local, lazy=lazy) == []  # nothing changed: nothing downloaded
    time.sleep(0.01)
    (run / "t1" / "result.json").write_text("{}\n{}\n")
    (run / "search_spec.yaml").unlink()
    assert remote.mirror(local, lazy=lazy) == ["t1/result.json"]
    assert (local / "t1" / "result.json").read_text() == "{}\n{}\n" and not (local / "search_spec.yaml").exists()
    fetched = remote.fetch(local, "t1/checkpoint_000001")
    assert (fetched / "model.bin").read_bytes() == b"w" * 100
    assert remote.mirror(local, lazy=lazy) == []  # a fetched checkpoint stays, and is not downloaded again
    assert (fetched / "model.bin").is_file()
    assert not [p for p in local.rglob("*.part")]


def test_upload_puts_files_at_their_relative_paths(fake_remote, tmp_path):
    remote = Remote.parse("s3://bkt/runs/sweep")
    local = mirror_dir(remote)
    (local / "plots").mkdir(parents=True)
    (local / "plots" / "heatmap.png").write_bytes(b"png")
    remote.upload(local, [local / "plots" / "heatmap.png"])
    assert (fake_remote / "bkt/runs/sweep/plots/heatmap.png").read_bytes() == b"png"
    assert remote.exists() and not remote.child("nothing").exists()


def test_a_remote_run_reads_back_through_its_mirror(fake_remote, tmp_path, write_spec):
    """read_run on a URI: the spec and trials come from the mirror, checkpoints only when asked for."""
    from search.rundir import read_run, save_spec
    from search.spec import load_spec

    spec = load_spec(write_spec("method: grid\nmetric: {name: s, goal: maximize}\nparameters: {x: {values: [1]}}\n"))
    remote = Remote.parse("s3://bkt/runs/sweep")
    save_spec(spec, remote, cuts_trials=True)
    (fake_remote / "bkt/runs/sweep/t/checkpoint_000000").mkdir(parents=True)
    (fake_remote / "bkt/runs/sweep/t/checkpoint_000000/w").write_text("weights")
    run = read_run("s3://bkt/runs/sweep")
    assert (run.source, run.location, run.cuts_trials) == (remote, "s3://bkt/runs/sweep", True)
    assert run.spec.raw == spec.raw and run.dir == mirror_dir(remote)
    checkpoint = run.dir / "t" / "checkpoint_000000"
    assert checkpoint.is_dir() and not (checkpoint / "w").exists()
    assert (run.local(checkpoint) / "w").read_text() == "weights"
    with pytest.raises(SpecError, match="not a run directory of ours"):
        read_run("s3://bkt/runs/other")


def test_an_unreachable_store_is_one_line(monkeypatch, tmp_path):
    """No server at the endpoint: one line naming the URI (pyarrow retries for a while; keep it short here)."""
    from search.errors import RunError
    from search.rundir import read_run

    storage._filesystem.cache_clear()
    monkeypatch.setenv("SEARCH_CACHE", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    uri = "s3://bkt/runs/sweep?endpoint_override=127.0.0.1:9&scheme=http&connect_timeout=0.5&request_timeout=0.5"
    started = time.monotonic()
    with pytest.raises((RunError, SpecError)) as info:
        read_run(uri)
    assert str(info.value).startswith("s3://bkt/runs/sweep: ") and "\n" not in str(info.value)
    assert time.monotonic() - started < 120
    storage._filesystem.cache_clear()
    assert os.environ["SEARCH_CACHE"] == str(tmp_path)


def test_a_missing_bucket_is_found_before_anything_runs(fake_remote, write_spec):
    """`search run --storage s3://nobucket/...` is one line naming the bucket, not Ray's traceback mid-start."""
    from search.spec import load_spec
    from search.tune import plan

    (fake_remote / "bkt").mkdir()
    assert Remote.parse("s3://bkt/runs").problem() is None
    assert Remote.parse("s3://nobucket/runs").problem() == "bucket 'nobucket' not found; create it, or fix the URI"
    spec = load_spec(write_spec("method: grid\nmetric: {name: s, goal: maximize}\ntrainable: TOY:quadratic\n"
                                "parameters: {x: {values: [1]}}\n"))  # fmt: skip
    with pytest.raises(SpecError, match=r"sweep.yaml: --storage: s3://nobucket/runs: bucket 'nobucket' not found"):
        plan(spec, storage="s3://nobucket/runs")
