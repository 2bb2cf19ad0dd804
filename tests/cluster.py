"""A real two-node Ray cluster on this one machine whose nodes share no disk, and a local S3 server (test helpers).

The nodes
    Each node is ``ray start --block`` in its own mount namespace (``unshare --mount --propagation private``; root
    only) with private tmpfs mounts over ``/tmp`` (Ray's temp and session dirs, trial working dirs, anything a trial
    writes to a temp file), ``/dev/shm`` (the object store) and ``$HOME`` (``~/ray_results``, caches), so a file one
    node writes there does not exist for the other node nor for the pytest process. The project directory and its venv
    stay visible to both, like the same image installed on two machines; so does the Python installation the venv
    points to when it lives under ``$HOME`` (it is bind-mounted back onto the private home). The nodes listen on
    different loopback addresses (head 127.0.0.2, worker 127.0.0.3), so Ray tells them apart as two hosts, and each
    has one CPU and a custom resource naming it (``node_head``, ``node_worker``) to place work with.

Storage
    The S3 server (moto) runs in the pytest process's namespace on loopback: both nodes reach it over the network,
    never through a shared disk. Every node and driver gets ``S3Server.env`` (credentials, endpoint, region).
    pyarrow's ``S3FileSystem`` ignores ``AWS_ENDPOINT_URL``: pass ``endpoint_override`` and ``scheme="http"``.

Where a driver runs
    A Ray driver talks to its node's raylet through unix sockets in the session dir, which lives in that node's
    private ``/tmp``: the pytest process cannot join (and it has its own local Ray, conftest's ``ray_session``).
    Drivers run inside the head's namespace: ``cluster.run_on_head(argv)`` (``popen_on_head`` for one a test watches
    or interrupts), as on a real cluster where ``search run --address ...`` runs on the head machine. Nothing here
    sets ``RAY_ADDRESS`` in the pytest process; pass ``--address cluster.address`` (or ``ray.init(address=...)``).
    ``run_on_worker`` is for looking at the worker's disk and processes. A driver there needs
    ``ray.init(address=..., _node_ip_address=WORKER_IP)``: without it Ray hands it the head's raylet, whose socket
    is not on the worker's disk (the worker's temp dir is ``/tmp/ray_worker``), and it crashes instead of talking
    to the wrong raylet.

Getting a file to a node
    ``cluster.head.path("/tmp/sweep.yaml")`` is that path as the head sees it (through ``/proc/PID/root``), readable
    and writable from the pytest process like ``scp`` to a machine: write a spec file there, then
    ``cluster.run_on_head([SEARCH, "run", "/tmp/sweep.yaml", "--address", cluster.address, "--storage", uri])``.
    ``node.put(src, dest)`` copies a file or directory there. Inputs a trial reads (a model directory under pytest's
    tmp_path) must be put on every node that may run it, or on S3, as on real machines; files under the project
    directory are visible everywhere. ``$HOME`` is private too: no Hugging Face cache there unless a test puts it.

Authentication (Ray 2.60)
    Every node and driver gets ``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN``: token authentication is on and
    Ray prints no warning about it. With ``RAY_AUTH_MODE`` unset, ``ray start --head`` turns token auth on by itself
    when it finds a token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, which any earlier
    local ``ray.init()`` creates) and warns either way; ``ray start --address`` and ``ray.init(address=...)`` never
    turn it on themselves, so against such a head a worker fails at once and a driver after ~20 s of retries, both
    with ``AuthenticationError: ... RAY_AUTH_MODE is currently 'disabled'``.

Cleanup
    Each node's namespace starts with a small supervisor (``SUPERVISOR``) that runs ``ray start --block``. ``stop()``
    SIGTERMs it: Ray drains and stops the node, then the supervisor SIGKILLs whatever still runs in the namespace
    (drivers, workers, agents); the tmpfs mounts vanish with the namespace's last process. When the process that
    started the cluster dies, even by SIGKILL, the supervisors see their stdin close and do the same, so a killed
    pytest leaves nothing behind. Never use ``ray stop`` here: it kills every Ray process on the machine, other
    tests' included.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.prefix) / "bin"  # the venv's scripts, the same path on every node
PYTHON = sys.executable
SEARCH = str(BIN / "search")
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"  # Ray replaces 127.0.0.1 by the host's address
WORKER_TEMP_DIR = "/tmp/ray_worker"  # the head keeps Ray's default /tmp/ray, so ray.init() on the head finds it
OBJECT_STORE_BYTES = 256 * 1024**2  # per node; /dev/shm is a private 1 GiB tmpfs
START_TIMEOUT_S = 120.0  # ray start takes ~5 s per node here, much longer on a loaded machine
STOP_TIMEOUT_S = 15.0  # a node given SIGTERM drains (Ray allows 30 s while a task runs); then SIGKILL

# Variables a Ray driver (conftest's ray_session) leaves in the pytest process's environment: none may reach a node.
_DRIVER_VARS = {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_CLIENT_MODE"}
_DRIVER_VARS |= {"PYTHONBREAKPOINT"}
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class ClusterError(RuntimeError):
    """A node or the S3 server did not start, a driver failed, or a process outlived teardown."""


def _die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGKILL when the process that started it dies (kept across ``exec``)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The pytest process's environment without what a Ray driver or pytest left in it, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _DRIVER_VARS and not k.startswith("PYTEST_")}
    return {**env, **extra}


def mount_namespace(pid: int) -> str | None:
    """``mnt:[inode]`` of a live process, None once it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def processes_in(namespace: str) -> list[int]:
    """The live processes whose mount namespace is ``namespace``."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and mount_namespace(int(p)) == namespace]


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------------- S3 (moto)


@dataclass
class S3Server:
    """moto's S3 server on a loopback port, with one bucket."""

    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    process: subprocess.Popen
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use the bucket (boto3 and the AWS CLI read the endpoint; pyarrow does not)."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix.lstrip('/')}"

    def filesystem(self, **kwargs: Any) -> Any:
        """A ``pyarrow.fs.S3FileSystem`` on this server (keys and paths are ``bucket/prefix/...``)."""
        from pyarrow.fs import S3FileSystem

        host_port = self.endpoint.removeprefix("http://")
        return S3FileSystem(
            access_key="testing",
            secret_key="testing",
            endpoint_override=host_port,
            scheme="http",
            region="us-east-1",
            **kwargs,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_s3_server(log_dir: Path, bucket: str = "search-test", timeout: float = 60.0) -> S3Server:
    """Starts moto's server on a free loopback port, waits until it answers, creates ``bucket``."""
    log = Path(log_dir) / "moto.log"
    for _attempt in range(3):  # another process may take the free port before moto binds it
        port = free_port()
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        server = S3Server(f"http://127.0.0.1:{port}", bucket, process, log)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(server.endpoint, timeout=2) as response:
                    if response.status == 200:
                        server.filesystem(allow_bucket_creation=True).create_dir(bucket)
                        return server
            except OSError:
                time.sleep(0.1)
        server.stop()
    raise ClusterError(f"moto's S3 server did not start; its log {log}:\n{_log_tail(log)}")


# --------------------------------------------------------------------------------------------------- Ray nodes


def _mount_script(home: str, keep: list[str]) -> str:
    """``sh -c`` text that makes /tmp, /dev/shm and ``home`` private tmpfs (the directories in ``keep``, which lie
    under them, stay visible: parked on a scratch tmpfs over /mnt while they are covered, then moved back), then
    execs its arguments."""
    q = shlex.quote
    lines = ["set -e", "mount -t tmpfs -o size=1m node-park /mnt"]
    for i, path in enumerate(keep):
        lines += [f"mkdir -p /mnt/{i}", f"mount --rbind {q(path)} /mnt/{i}"]
    lines += [
        "mount -t tmpfs -o mode=1777,size=4g node-tmp /tmp",
        "mount -t tmpfs -o mode=1777,size=1g node-shm /dev/shm",
    ]
    if home != "/":
        lines.append(f"mount -t tmpfs -o mode=700 node-home {q(home)}")
    for i, path in enumerate(keep):
        lines += [f"mkdir -p {q(path)}", f"mount --move /mnt/{i} {q(path)}"]
    lines += ["umount /mnt", 'exec "$@"']
    return "\n".join(lines)


def _private_home_and_keep() -> tuple[str, list[str]]:
    """$HOME (or "/" when it cannot be private), and the directories both nodes must still see (the project, the
    venv's Python) that lie under a directory a node covers (/tmp, /dev/shm, $HOME): a CI may clone under /tmp."""
    home = os.path.realpath(os.path.expanduser("~"))
    needed = {str(REPO), os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    if any(home == path or home.startswith(path + "/") for path in needed):
        home = "/"  # home is the project or Python, or inside them: it cannot be private
    covered = ["/tmp", "/dev/shm"] + ([home] if home != "/" else [])
    under = sorted(p for p in needed if any(p == c or p.startswith(c + "/") for c in covered))
    for path in under:
        if path in covered:
            raise ClusterError(f"{path} is itself a directory each node covers with its own tmpfs")
    keep = [p for p in under if not any(p.startswith(q + "/") for q in under if q != p)]
    return home, keep


# The first process of a node's namespace: runs `ray start --block`, passes it SIGTERM, and when it ends, or when the
# process that started the node dies (EOF on stdin, a pipe only that process writes), SIGKILLs everything left in the
# namespace. Ray alone is not enough: when the GCS and a raylet die together, the raylet's agents keep trying to
# report to the GCS for a minute.
SUPERVISOR = """\
import os, signal, subprocess, sys, threading, time
namespace = os.readlink("/proc/self/ns/mnt")
def sweep():
    while True:
        left = []
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") == namespace:
                    os.kill(pid, signal.SIGKILL)
                    left.append(pid)
            except OSError:
                pass
        if not left:
            return
        time.sleep(0.05)
def watch_owner():
    while os.read(0, 4096):
        pass
    sweep()
    os._exit(1)
node = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
signal.signal(signal.SIGTERM, lambda *_: node.send_signal(signal.SIGTERM))
threading.Thread(target=watch_owner, daemon=True).start()
code = node.wait()
sweep()
sys.exit(code)
"""


class Node:
    """One ``ray start --block`` in its own mount namespace, under ``SUPERVISOR``."""

    def __init__(self, name: str, ray_args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.env = env
        self.log = log
        home, keep = _private_home_and_keep()
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _mount_script(home, keep), name]
        argv += [PYTHON, "-c", SUPERVISOR, str(BIN / "ray"), "start", "--block", *ray_args]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                argv, env=env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.namespace = self._own_namespace()
        self._children: list[subprocess.Popen] = []

    def _own_namespace(self) -> str:
        ours = mount_namespace(os.getpid())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            namespace = mount_namespace(self.process.pid)
            if namespace is None or self.process.poll() is not None:
                break
            if namespace != ours:
                return namespace
            time.sleep(0.01)
        raise ClusterError(f"{self.name}: no mount namespace of its own (root needed); log:\n{_log_tail(self.log)}")

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise ClusterError(f"{self.name} node did not start within {timeout:.0f} s; {self.log}:\n{_log_tail(self.log)}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def pids(self) -> list[int]:
        return processes_in(self.namespace)

    def path(self, path: str | os.PathLike) -> Path:
        """``path`` as this node sees it, for the pytest process to read or write (while the node runs)."""
        return Path(f"/proc/{self.process.pid}/root") / Path(path).relative_to("/")

    def put(self, source: str | os.PathLike, dest: str | os.PathLike) -> Path:
        """Copies a file or directory of the pytest process's disk to ``dest`` on this node (like ``scp -r``)."""
        target = self.path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return Path(dest)

    def popen(self, argv: list[str], env: dict[str, str] | None = None, cwd: str | os.PathLike = REPO, **kw: Any):
        """``subprocess.Popen(argv)`` inside this node's mount namespace, with the node's environment plus ``env``."""
        command = ["nsenter", f"--target={self.process.pid}", "--mount", f"--wd={cwd}", "--", *map(str, argv)]
        child = subprocess.Popen(command, env={**self.env, **(env or {})}, preexec_fn=_die_with_parent, **kw)
        self._children.append(child)
        return child

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 600, input: str | None = None, **kw
    ) -> subprocess.CompletedProcess:
        """``subprocess.run(argv, capture_output=True, text=True)`` inside this node's mount namespace."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        if input is not None:
            kw["stdin"] = subprocess.PIPE
        child = self.popen(argv, env=env, **kw)
        try:
            stdout, stderr = child.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
            raise subprocess.TimeoutExpired(child.args, timeout, stdout, stderr) from None
        return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)

    def raylet_pid(self) -> int | None:
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        return None

    def node_id(self) -> str:
        """This node's Ray node id (hex), read from its raylet's command line."""
        pid = self.raylet_pid()
        if pid is not None:
            for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                if arg.startswith(b"--node_id="):
                    return arg.split(b"=", 1)[1].decode()
        raise ClusterError(f"{self.name}: no raylet running")

    def kill_children(self) -> None:
        """SIGKILL to the processes ``popen``/``run`` started here that still run (drivers, probes)."""
        for child in self._children:
            if child.poll() is None:
                child.kill()
            child.wait()
        self._children = []

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to ``ray start --block`` (Ray stops the node; the supervisor then kills what is left in the namespace,
        and so do we after ``timeout``)."""
        self.kill_children()
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + timeout
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        if left := self.pids():
            raise ClusterError(f"{self.name}: processes {left} outlived teardown")


DRIVER_PREAMBLE = """\
import json, os, sys, time
import ray
ray.init(address={address!r}, log_to_driver=False, configure_logging=False)
"""


@dataclass
class TwoNodeCluster:
    """A head and a worker node, each in its own mount namespace; see the module's docstring.

    ``with TwoNodeCluster(env=s3.env, log_dir=path) as cluster:`` starts both nodes and stops them on exit.
    """

    env: dict[str, str]  # given to every node and driver (the S3 variables)
    log_dir: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    head: Node | None = None
    worker: Node | None = None
    _workers_started: int = 0

    def __post_init__(self) -> None:
        self.log_dir = Path(self.log_dir)

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    @property
    def node_env(self) -> dict[str, str]:
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0"}
        return child_env({**self.env, **auth})

    def _common_args(self, name: str) -> list[str]:
        return [
            "--num-cpus=1",
            "--num-gpus=0",
            f"--resources={json.dumps({f'node_{name}': 1})}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--dashboard-agent-listen-port=0",  # the default 52365 is one port for every node on the machine
            "--min-worker-port=0",  # random worker ports, not the shared default range 10002-19999
            "--max-worker-port=0",
            "--disable-usage-stats",
        ]

    def start(self) -> TwoNodeCluster:
        """Starts the head, then the worker; stops both if either fails."""
        try:
            self.start_head()
            self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def start_head(self) -> Node:
        args = ["--head", f"--port={self.port}", f"--node-ip-address={HEAD_IP}", "--include-dashboard=false"]
        self.head = Node("head", args + self._common_args("head"), self.node_env, self.log_dir / "head.log")
        self.head.wait_started()
        return self.head

    def start_worker(self) -> Node:
        self._workers_started += 1
        args = [f"--address={self.address}", f"--node-ip-address={WORKER_IP}", f"--temp-dir={WORKER_TEMP_DIR}"]
        log = self.log_dir / f"worker{self._workers_started}.log"
        self.worker = Node("worker", args + self._common_args("worker"), self.node_env, log)
        self.worker.wait_started()
        return self.worker

    def restart_worker(self) -> Node:
        """A fresh worker node (new namespace, empty disk) in place of the old one, dead or alive."""
        if self.worker is not None:
            self.worker.stop()
        return self.start_worker()

    def kill_worker_raylet(self) -> str:
        """SIGKILL to the worker's raylet, as when its machine dies; returns the worker's node id.

        Its ``ray start --block`` then kills the node's other processes within ~1 s and exits.
        """
        node_id = self.worker.node_id()
        os.kill(self.worker.raylet_pid(), signal.SIGKILL)
        return node_id

    def node_ids(self) -> dict[str, str]:
        """``{"head": id, "worker": id}`` of the running nodes (hex), without asking Ray."""
        return {node.name: node.node_id() for node in (self.head, self.worker) if node is not None and node.alive}

    # -- drivers, all inside the head's namespace

    def run_on_head(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        return self.head.run(argv, **kw)

    def popen_on_head(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        return self.head.popen(argv, **kw)

    def run_on_worker(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        return self.worker.run(argv, **kw)

    def popen_on_worker(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        return self.worker.popen(argv, **kw)

    def driver(self, code: str, timeout: float = 300) -> Any:
        """Runs ``code`` as a Ray driver on the head (``ray`` is connected); returns the JSON its last line prints."""
        proc = self.run_on_head([PYTHON, "-c", DRIVER_PREAMBLE.format(address=self.address) + code], timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError(f"driver exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def nodes(self) -> list[dict[str, Any]]:
        """What the cluster (its GCS) says about every node it has known: id, alive, ip, resources."""
        return self.driver(
            "print(json.dumps([{'node_id': n['NodeID'], 'alive': n['Alive'], 'ip': n['NodeManagerAddress'],"
            " 'resources': n['Resources']} for n in ray.nodes()]))"
        )

    def wait_until_dead(self, node_id: str, timeout: float = 120) -> float:
        """Seconds until the cluster reports ``node_id`` dead (polled by one driver); ClusterError after ``timeout``."""
        seconds = self.driver(
            f"start = time.monotonic()\n"
            f"while any(n['NodeID'] == {node_id!r} and n['Alive'] for n in ray.nodes()):\n"
            f"    if time.monotonic() - start > {timeout}:\n"
            f"        sys.exit('still alive')\n"
            f"    time.sleep(0.25)\n"
            f"print(time.monotonic() - start)",
            timeout=timeout + 60,
        )
        return float(seconds)

    def stop(self) -> None:
        """Stops the worker, then the head; raises ClusterError if a process of either outlives it."""
        errors = []
        for node in (self.worker, self.head):  # drivers first: their tasks end, the nodes drain at once
            if node is not None:
                node.kill_children()
        for node in (self.worker, self.head):
            if node is not None:
                try:
                    node.stop()
                except ClusterError as error:
                    errors.append(str(error))
        if errors:
            raise ClusterError("; ".join(errors))

    def __enter__(self) -> TwoNodeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
