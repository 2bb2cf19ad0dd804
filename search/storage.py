"""Run directories on cloud storage: the filesystem pyarrow opens for a URI, and a local mirror of a run.

A sweep's ``storage`` is a local (or shared-filesystem) path, or any URI Ray Tune's ``RunConfig(storage_path=...)``
takes (``s3://bucket/prefix``, ``gs://bucket/prefix``, ...). Ray writes the run there from every node; ``search``
reads it back through :class:`Remote`, which downloads what a reader needs into a local mirror (checkpoints only on
demand: ranking a run from a laptop must not pull every model).

Filesystem options come from the spec's ``storage_options``, then the URI's query (pyarrow's own syntax,
``s3://b/p?endpoint_override=host:9000&scheme=http``), then the standard environment: ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` (pyarrow's ``S3FileSystem`` does not read them itself) and ``AWS_REGION`` /
``AWS_DEFAULT_REGION``. Credentials never go into a spec: each node reads its own (environment, instance role,
``~/.aws``), as pyarrow does.

Example:
    >>> is_uri("s3://bucket/runs"), is_uri("./runs"), is_uri("/shared/runs")
    (True, False, False)
    >>> Remote.parse("s3://bucket/runs/?region=eu-west-1").child("sweep")
    Remote(uri='s3://bucket/runs/sweep', options=(('region', 'eu-west-1'),))
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
# The S3FileSystem options a spec may set (the ones a user needs for a non-AWS endpoint); credentials are not here.
OPTION_KEYS = ("endpoint_override", "region", "scheme", "force_virtual_addressing")
DEFAULT_CACHE = "~/.cache/search"  # the local mirrors of remote runs live under $SEARCH_CACHE/runs (this default)


def is_uri(location: Any) -> bool:
    """Whether ``location`` is a storage URI (``file://`` counts as a local path)."""
    if not isinstance(location, str):
        return False
    match = _URI.match(location)
    return match is not None and match.group(1).lower() != "file"


def local_path(location: str) -> Path:
    """A local location as an absolute path (``file://`` stripped)."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    return Path(location).expanduser().resolve()


@functools.lru_cache(maxsize=16)
def _filesystem(scheme: str, options: tuple[tuple[str, Any], ...]) -> Any:
    import pyarrow.fs as pafs

    opts = dict(options)
    if scheme == "s3":
        endpoint = opts.pop("endpoint_override", None) or os.environ.get("AWS_ENDPOINT_URL_S3")
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "://" in endpoint:
            endpoint_scheme, endpoint = endpoint.split("://", 1)
            opts.setdefault("scheme", endpoint_scheme)
        region = opts.pop("region", None) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return pafs.S3FileSystem(endpoint_override=endpoint or None, region=region, **opts)
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://bucket")  # gs://, hdfs://, ...: pyarrow's defaults
    return fs


@dataclass(frozen=True)
class Remote:
    """A location on a remote filesystem: ``uri`` without its query, and the filesystem options."""

    uri: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, uri: str, options: dict | None = None) -> Remote:
        """A URI with pyarrow's query options (``?endpoint_override=...``), which ``options`` override."""
        base, _, query = uri.partition("?")
        merged = {**{k: _typed(v) for k, v in parse_qsl(query)}, **(options or {})}
        return cls(base.rstrip("/"), tuple(sorted(merged.items())))

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0].lower()

    @property
    def path(self) -> str:
        """The location as the filesystem names it (``bucket/prefix``)."""
        return self.uri.split("://", 1)[1].strip("/")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> Remote:
        return Remote(self.uri.rsplit("/", 1)[0], self.options)

    @property
    def fs(self) -> Any:
        """The ``pyarrow.fs`` filesystem (one per scheme and options in a process)."""
        return _filesystem(self.scheme, self.options)

    def child(self, relative: str) -> Remote:
        return Remote(f"{self.uri}/{relative.strip('/')}", self.options)

    __truediv__ = child  # `location / name` for a Remote as for a Path

    def __str__(self) -> str:
        return self.uri

    def exists(self) -> bool:
        """Whether any file lies at or under this location."""
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def problem(self) -> str | None:
        """Why runs cannot be written here (no such bucket, no credentials, an unreachable endpoint), or None."""
        import pyarrow.fs as pafs

        bucket = self.path.split("/", 1)[0]
        try:
            if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                return f"bucket {bucket!r} not found; create it, or fix the URI"
        except OSError as error:
            return " ".join(str(error).split())
        return None

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write one file (a whole object: a reader never sees half of it)."""
        path = f"{self.path}/{relative.strip('/')}"
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)  # object stores need none; filesystems do
        with self.fs.open_output_stream(path) as out:
            out.write(data)

    def files(self) -> list[Any]:
        """Every file under this location (``pyarrow.fs.FileInfo``), with its size and modification time."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        return [info for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]

    def mirror(self, local: Path, *, lazy: Callable[[str], bool] = lambda rel: False) -> list[str]:
        """Bring ``local`` up to date with this location: download new and changed files (by size and time), delete
        files no longer there. A file for which ``lazy(relative path)`` holds is not downloaded, only its directory
        made (:meth:`fetch` gets it on demand). Returns the relative paths downloaded."""
        local.mkdir(parents=True, exist_ok=True)
        remote: set[str] = set()
        downloaded = []
        for info in self.files():
            rel = info.path[len(self.path) + 1 :]
            remote.add(rel)
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if lazy(rel) and not target.exists():
                continue
            if not _same(target, info):
                _download(self.fs, info, target)
                downloaded.append(rel)
        for path in [p for p in local.rglob("*") if p.is_file()]:
            if str(path.relative_to(local)) not in remote:
                path.unlink()
        return downloaded

    def fetch(self, local_root: Path, relative: str) -> Path:
        """Download (if not already here) every file under ``relative``, into the mirror ``local_root``."""
        for info in self.child(relative).files():
            target = local_root / info.path[len(self.path) + 1 :]
            if not _same(target, info):
                target.parent.mkdir(parents=True, exist_ok=True)
                _download(self.fs, info, target)
        return local_root / relative

    def upload(self, local_root: Path, paths: Iterable[Path]) -> None:
        """Upload files under the mirror ``local_root`` to the same relative paths here."""
        for path in paths:
            self.write_bytes(str(Path(path).resolve().relative_to(local_root)), Path(path).read_bytes())


def _typed(value: str) -> Any:
    """A URI query value as pyarrow's option wants it: ``0.5`` a float, ``true`` a bool, else the string."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _same(target: Path, info: Any) -> bool:
    """Whether the local file is the remote one as last downloaded (same size, mtime set from the remote)."""
    try:
        stat = target.stat()
    except FileNotFoundError:
        return False
    mtime = info.mtime.timestamp() if info.mtime is not None else None
    return stat.st_size == info.size and (mtime is None or abs(stat.st_mtime - mtime) < 1e-3)


def _download(fs: Any, info: Any, target: Path) -> None:
    """Copy one remote file to ``target`` through a temporary file (a reader never sees half of it)."""
    tmp = target.with_name(f".{target.name}.part")
    with fs.open_input_stream(info.path) as source, open(tmp, "wb") as out:
        while block := source.read(1 << 20):
            out.write(block)
    if info.mtime is not None:
        os.utime(tmp, (info.mtime.timestamp(), info.mtime.timestamp()))
    os.replace(tmp, target)


def mirror_dir(remote: Remote) -> Path:
    """Where a remote run is mirrored on this machine: ``$SEARCH_CACHE/runs/<scheme>/<bucket>/<prefix>``."""
    root = Path(os.environ.get("SEARCH_CACHE") or DEFAULT_CACHE).expanduser()
    return root / "runs" / remote.scheme / remote.path


def ray_storage(location: Path | Remote) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray Tune's ``RunConfig`` and ``Tuner.restore``."""
    if isinstance(location, Remote):
        return location.path, location.fs
    return str(location), None


__all__ = ["OPTION_KEYS", "Remote", "is_uri", "local_path", "mirror_dir", "ray_storage"]
