"""The two-node cluster that sweep tests run on (tests/cluster.py): two live nodes of one CPU each that share no disk,
both reading and writing the S3 bucket, a dead node seen as dead, and nothing left running after teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cluster import HEAD_IP, PYTHON, WORKER_IP, TwoNodeCluster, mount_namespace, processes_in

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TASKS = """
from pathlib import Path

@ray.remote(num_cpus=0)
def write(path):
    path = Path(path).expanduser()
    path.write_text("written")
    return ray.get_runtime_context().get_node_id(), str(path)

@ray.remote(num_cpus=0)
def sees(path):
    return ray.get_runtime_context().get_node_id(), Path(path).expanduser().exists()

def on(name):
    return {"resources": {f"node_{name}": 0.001}}
"""


def test_two_live_nodes_with_one_cpu_each_in_their_own_mount_namespaces(two_node_cluster):
    cluster = two_node_cluster
    alive = {node["ip"]: node for node in cluster.nodes() if node["alive"]}

    assert set(alive) == {HEAD_IP, WORKER_IP}
    assert alive[HEAD_IP]["node_id"] == cluster.node_ids()["head"]
    assert alive[WORKER_IP]["node_id"] == cluster.node_ids()["worker"]
    for name, ip in (("head", HEAD_IP), ("worker", WORKER_IP)):
        assert alive[ip]["resources"]["CPU"] == 1
        assert alive[ip]["resources"][f"node_{name}"] == 1
    assert len({mount_namespace(os.getpid()), cluster.head.namespace, cluster.worker.namespace}) == 3
    assert "RAY_ADDRESS" not in os.environ  # the pytest process's own Ray (ray_session) is untouched


def test_a_file_one_node_writes_does_not_exist_on_the_other_nor_for_pytest(two_node_cluster):
    cluster = two_node_cluster
    tag = uuid.uuid4().hex
    places = [f"/tmp/{tag}", f"~/{tag}", f"/dev/shm/{tag}"]  # temp files, ~/ray_results and the like, object store
    result = cluster.driver(
        TASKS
        + f"places = {places!r}\n"
        + "out = {}\n"
        + "for writer, reader in (('worker', 'head'), ('head', 'worker')):\n"
        + "    for place in places:\n"
        + "        path = place + '.' + writer\n"
        + "        written = ray.get(write.options(**on(writer)).remote(path))\n"
        + "        seen = ray.get(sees.options(**on(reader)).remote(path))\n"
        + "        out[path] = {'writer': written, 'reader': seen, 'driver_sees': Path(path).expanduser().exists()}\n"
        + "print(json.dumps(out))"
    )
    ids = cluster.node_ids()

    assert len(result) == 6
    for path, out in result.items():
        writer, reader = ("worker", "head") if path.endswith(".worker") else ("head", "worker")
        (writer_id, written), (reader_id, reader_sees) = out["writer"], out["reader"]
        assert (writer_id, reader_id) == (ids[writer], ids[reader]), path
        node = cluster.worker if writer == "worker" else cluster.head
        assert node.path(written).read_text() == "written", path  # the file exists, on its writer's disk only
        assert not reader_sees, f"{path}: the {reader} node sees the {writer}'s file"
        assert not Path(written).exists(), f"{path}: the pytest process sees the {writer}'s file"
        if writer == "worker":
            assert not out["driver_sees"], f"{path}: the driver on the head sees the worker's file"


def test_a_test_puts_files_on_a_node_and_runs_commands_there(two_node_cluster, tmp_path):
    cluster = two_node_cluster
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    cluster.head.path("/tmp/sweep.yaml").write_text("method: grid\n")

    assert cluster.worker.put(tmp_path / "model", "/tmp/inputs/model") == Path("/tmp/inputs/model")
    assert cluster.run_on_worker(["cat", "/tmp/inputs/model/config.json"]).stdout == "{}"
    assert cluster.run_on_head(["cat", "/tmp/sweep.yaml"]).stdout == "method: grid\n"
    assert cluster.run_on_head(["ls", "/tmp/inputs"]).returncode != 0  # put on the worker only
    assert cluster.run_on_head(["sh", "-c", "echo $AWS_ACCESS_KEY_ID $RAY_AUTH_MODE"]).stdout == "testing token\n"


def test_both_nodes_write_the_s3_bucket_and_the_driver_reads_both(two_node_cluster, s3_server):
    prefix = f"{s3_server.bucket}/cluster-test/{uuid.uuid4().hex}"
    result = two_node_cluster.driver(
        TASKS
        + "from pyarrow.fs import S3FileSystem\n"
        + "def s3():  # pyarrow ignores AWS_ENDPOINT_URL: the node's environment gives it, we pass it on\n"
        + "    return S3FileSystem(endpoint_override=os.environ['AWS_ENDPOINT_URL'].removeprefix('http://'),\n"
        + "                        scheme='http', region=os.environ['AWS_REGION'],\n"
        + "                        access_key=os.environ['AWS_ACCESS_KEY_ID'],\n"
        + "                        secret_key=os.environ['AWS_SECRET_ACCESS_KEY'])\n"
        + "@ray.remote(num_cpus=0)\n"
        + "def put(key):\n"
        + "    node = ray.get_runtime_context().get_node_id()\n"
        + "    with s3().open_output_stream(key) as out:\n"
        + "        out.write(node.encode())\n"
        + "    return node\n"
        + f"keys = {{name: {prefix!r} + '/' + name for name in ('head', 'worker')}}\n"
        + "written = {name: ray.get(put.options(**on(name)).remote(key)) for name, key in keys.items()}\n"
        + "read = {name: s3().open_input_stream(key).read().decode() for name, key in keys.items()}\n"
        + "print(json.dumps({'written': written, 'read': read}))"
    )
    ids = two_node_cluster.node_ids()

    assert result["written"] == ids
    assert result["read"] == ids
    fs = s3_server.filesystem()
    assert {name: fs.open_input_stream(f"{prefix}/{name}").read().decode() for name in ids} == ids


def test_a_killed_worker_is_reported_dead_then_a_new_worker_joins(two_node_cluster):
    cluster = two_node_cluster
    old = cluster.worker
    dead = cluster.kill_worker_raylet()

    seconds = cluster.wait_until_dead(dead, timeout=60)  # Ray's default health check: ~15 s here
    old.process.wait(30)  # its `ray start --block` saw the raylet die and stopped the rest of the node
    deadline = time.monotonic() + 30
    while old.pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not old.pids(), "processes of the dead worker node still run"

    cluster.restart_worker()
    alive = {node["ip"]: node["node_id"] for node in cluster.nodes() if node["alive"]}
    assert alive == {HEAD_IP: cluster.node_ids()["head"], WORKER_IP: cluster.node_ids()["worker"]}
    assert alive[WORKER_IP] != dead
    print(f"worker reported dead {seconds:.1f} s after its raylet was killed")


def _started(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/PID/stat): tells a process from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _still_running(processes: dict[int, str | None]) -> list[int]:
    return [pid for pid, started in processes.items() if started is not None and _started(pid) == started]


def test_stop_leaves_no_process_even_with_a_driver_and_a_task_running(s3_server, tmp_path):
    cluster = TwoNodeCluster(env=s3_server.env, log_dir=tmp_path).start()
    try:
        driver = cluster.popen_on_head(
            [PYTHON, "-c", "import ray, time\n"
             f"ray.init(address={cluster.address!r}, log_to_driver=False)\n"
             "@ray.remote(num_cpus=1, resources={'node_worker': 0.001})\n"
             "def busy():\n"
             "    open('/tmp/busy', 'w').close()\n"
             "    time.sleep(600)\n"
             "ray.get(busy.remote())"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not cluster.worker.path("/tmp/busy").exists() and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver died"
            time.sleep(0.2)
        assert cluster.worker.path("/tmp/busy").exists(), "the task never started on the worker"
        namespaces = [cluster.head.namespace, cluster.worker.namespace]
        running = {pid: _started(pid) for ns in namespaces for pid in processes_in(ns)}
        assert len(running) > 8  # gcs_server, raylets, agents, the driver, the busy task's worker, ...
    finally:
        started = time.monotonic()
        cluster.stop()
        print(f"stop took {time.monotonic() - started:.1f} s")

    assert driver.poll() is not None
    assert [pid for ns in namespaces for pid in processes_in(ns)] == []
    assert _still_running(running) == []
    pgrep = subprocess.run(["pgrep", "-f", f":{cluster.port}([^0-9]|$)"], capture_output=True, text=True)
    assert pgrep.stdout == "", "processes that name the cluster's address still run"


OWNER = """
import json, sys, time
sys.path.insert(0, {tests!r})
from cluster import TwoNodeCluster
cluster = TwoNodeCluster(env={env!r}, log_dir={log_dir!r})
cluster.start_head()  # a worker node has the same supervisor
print(json.dumps([cluster.head.namespace]), flush=True)
time.sleep(600)
"""


def test_nothing_outlives_a_killed_pytest(s3_server, tmp_path):
    """The process that started a node dies by SIGKILL (no teardown runs): the node dies with it at once, agents
    included (left to Ray alone, they outlived a dead GCS by a minute)."""
    code = OWNER.format(tests=str(Path(__file__).parent), env=s3_server.env, log_dir=str(tmp_path))
    with open(tmp_path / "owner.err", "w") as err:
        owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = owner.stdout.readline()
        assert line, (tmp_path / "owner.err").read_text()
        namespaces = json.loads(line)
        running = {pid: _started(pid) for ns in namespaces for pid in processes_in(ns)}
        assert len(running) > 5
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 10
    while _still_running(running) and time.monotonic() < deadline:
        time.sleep(0.2)

    assert _still_running(running) == []
    assert [pid for ns in namespaces for pid in processes_in(ns)] == []
