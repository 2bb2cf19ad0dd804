"""One beam pass decoded once per sweep, across Ray nodes: a board in Ray that hands out passes and keeps their entries.

Trials that share a beam pass (same pass key from :func:`search.decoding.canonical`) should not each decode it, and
on a cluster the nodes share no disk, so a file lock cannot coordinate them. The driver creates one :class:`PassBoard`
actor per sweep (:func:`create_board`); a trial asks it for its config (:func:`share`) and gets

- the **entry**, when another trial decoded it: hypotheses, output lengths, the pass's seconds and size;
- a **lease**, when nobody is decoding it: this trial decodes the configs the lease names (its own and the other
  planned configs of the pass nobody holds), puts their entries on the board and so ends the lease; or
- **wait**, when another trial holds a lease on it: the trial asks again every ``POLL_S``.

A holder renews its lease from a heartbeat thread every ``LEASE_TTL_S / HEARTBEATS_PER_TTL`` seconds while it decodes.
A holder whose node dies (SIGKILL: no ``finally`` block runs) stops renewing; its lease expires ``LEASE_TTL_S`` after
the last renewal, and the next trial that asks takes the pass over. A trial that waits longer than ``MAX_WAIT_S`` (a
holder that is alive but never finishes) raises :class:`PassWaitTimeout` instead of hanging. Deadlines are kept by the
board's clock, wait bounds by the trial's: no two machines' clocks are compared.

The entries live in the actor's memory: a decoded dev set of hundreds of sentences is tens of kilobytes per config,
and the board lives as long as the sweep (the driver holds its handle; a non-detached actor dies with its owner).

The logic is the plain class :class:`PassBoard` (tested without Ray, with an injected clock); :func:`create_board`
runs it as an actor and :class:`RemoteBoard` calls that actor as if it were the plain class. Ray is imported inside
functions only, so that importing this module stays cheap (the actor's process imports it too).

Example:
    >>> now = [0.0]
    >>> board = PassBoard(ttl_s=30, clock=lambda: now[0])
    >>> first = board.claim("pass", "lp=0.6", ["lp=0.6", "lp=1.0"])
    >>> first.kind, first.keys
    ('lease', ('lp=0.6', 'lp=1.0'))
    >>> board.claim("pass", "lp=1.0", ["lp=1.0"]).kind
    'wait'
    >>> board.put("pass", {"lp=0.6": {"bleu": 1}, "lp=1.0": {"bleu": 2}}, first.lease)
    >>> board.claim("pass", "lp=1.0", ["lp=1.0"]).entry
    {'bleu': 2}
    >>> second = board.claim("pass", "lp=2.0", ["lp=2.0"])  # a config outside the first lease: a new lease
    >>> now[0] = 31.0  # its holder died: no renewal for ttl_s
    >>> board.claim("pass", "lp=2.0", ["lp=2.0"]).kind  # taken over
    'lease'
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from search.decoding.cache import merge_records

# A holder that missed this long of renewals is gone; 30 s is long against a GIL-bound decode delaying its heartbeat
# thread or a busy actor, short against a pass the other trials then wait for.
LEASE_TTL_S = 30.0
# Renewals per lease lifetime: a holder is declared dead only after missing 6 in a row (one every 5 s).
HEARTBEATS_PER_TTL = 6
# How often a waiting trial asks again: a pass takes seconds to minutes, and a call costs the actor ~1 ms.
POLL_S = 0.5
# A waiter gives up after this long: a pass over a dev set of hundreds of sentences takes minutes on a CPU; a holder
# that renews for 6 hours is alive but stuck.
MAX_WAIT_S = 6 * 3600.0
# The key under which a pass's records (``beam.PassRecords.stored``) are kept and leased: who holds it is making the
# pass's first record; a later put merges a longer record in instead of keeping the first.
RECORD = "record"
# Boards are looked up in their own namespace, whatever the namespace of the driver's or the trial's Ray job.
NAMESPACE = "search-passes"


class PassWaitTimeout(RuntimeError):
    """A trial waited longer than ``MAX_WAIT_S`` for another trial's pass."""


@dataclass(frozen=True)
class Answer:
    """The board's answer to a claim.

    Attributes:
        kind: ``"entry"``, ``"lease"`` or ``"wait"``.
        entry: the claimed config's entry (``"entry"``).
        lease: the lease id to renew, put and release with (``"lease"``).
        keys: the config keys the lease holder decodes, the claimed one first (``"lease"``).
        renew_every_s: how often the holder renews the lease (``"lease"``).
    """

    kind: str
    entry: dict | None = None
    lease: int | None = None
    keys: tuple[str, ...] = ()
    renew_every_s: float = 0.0


@dataclass
class _Lease:
    pass_key: str
    keys: tuple[str, ...]
    deadline: float


class PassBoard:
    """Who decodes which configs of which pass, and the entries decoded so far (see the module docstring).

    Args:
        ttl_s: a lease expires this long after it was granted or last renewed.
        clock: seconds, increasing (injected by tests).
    """

    def __init__(self, ttl_s: float = LEASE_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self._clock = ttl_s, clock
        self._entries: dict[tuple[str, str], dict] = {}
        self._leases: dict[int, _Lease] = {}
        self._holder: dict[tuple[str, str], int] = {}  # (pass, config key) -> id of the lease that covers it
        self._ids = itertools.count(1)
        self._counts = {"leases": 0, "expired": 0}

    def claim(self, pass_key: str, key: str, group: Sequence[str]) -> Answer:
        """The entry of ``key``, or a lease on it and on the configs of ``group`` nobody has or holds, or wait."""
        self._expire()
        if (pass_key, key) in self._entries:
            return Answer("entry", entry=self._entries[pass_key, key])
        if (pass_key, key) in self._holder:
            return Answer("wait")
        free = [k for k in dict.fromkeys([key, *group]) if (pass_key, k) not in self._entries]
        keys = tuple(k for k in free if (pass_key, k) not in self._holder)
        lease = next(self._ids)
        self._leases[lease] = _Lease(pass_key, keys, self._clock() + self.ttl_s)
        self._holder.update({(pass_key, k): lease for k in keys})
        self._counts["leases"] += 1
        return Answer("lease", lease=lease, keys=keys, renew_every_s=self.ttl_s / HEARTBEATS_PER_TTL)

    def renew(self, lease: int) -> bool:
        """Push the lease's deadline back; False when it had expired (another trial may have taken its configs)."""
        self._expire()
        if lease not in self._leases:
            return False
        self._leases[lease].deadline = self._clock() + self.ttl_s
        return True

    def put(self, pass_key: str, entries: dict[str, dict], lease: int | None = None) -> None:
        """Store decoded entries (the first stored entry of a config stays; records merge) and end ``lease``.

        An expired holder's entries are still taken: they are the same decode, and a waiter gets them sooner.
        """
        for key, entry in entries.items():
            if key == RECORD:
                self._entries[pass_key, key] = merge_records(self._entries.get((pass_key, key)), entry)
            else:
                self._entries.setdefault((pass_key, key), entry)
        if lease is not None:
            self.release(lease)

    def release(self, lease: int) -> None:
        """End a lease without entries (its holder failed): the next claim of its configs gets a new lease."""
        held = self._leases.pop(lease, None)
        for key in held.keys if held else ():
            if self._holder.get((held.pass_key, key)) == lease:
                del self._holder[held.pass_key, key]

    def stats(self) -> dict[str, int]:
        """``entries`` stored, ``leases`` granted, ``expired`` leases (taken over or never finished), ``held`` now."""
        self._expire()
        return {"entries": len(self._entries), **self._counts, "held": len(self._leases)}

    def _expire(self) -> None:
        now = self._clock()
        for lease in [i for i, held in self._leases.items() if held.deadline <= now]:
            self.release(lease)
            self._counts["expired"] += 1


class Board(Protocol):
    """What :func:`share` calls: a :class:`PassBoard` or a :class:`RemoteBoard`."""

    def claim(self, pass_key: str, key: str, group: Sequence[str]) -> Answer: ...
    def renew(self, lease: int) -> bool: ...
    def put(self, pass_key: str, entries: dict[str, dict], lease: int | None = None) -> None: ...
    def release(self, lease: int) -> None: ...


def share(
    board: Board,
    pass_key: str,
    key: str,
    group: Sequence[str],
    compute: Callable[[list[str]], dict[str, dict]],
    *,
    max_wait_s: float = MAX_WAIT_S,
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict, bool]:
    """``(entry of key, computed here)``: another trial's entry, or ``compute(keys)`` under a lease.

    Args:
        board: the sweep's board.
        pass_key: the beam pass ``key`` belongs to.
        key: this trial's config key.
        group: the keys decoded with ``key`` when this trial gets the pass (the plan's configs of the pass).
        compute: decodes the keys of a lease (``key`` first) and returns an entry for each of them.
        max_wait_s: raise :class:`PassWaitTimeout` after waiting this long.
        poll_s: seconds between claims while waiting.
        clock: the waiter's clock (injected by tests), with ``sleep``.
    """
    start = clock()
    while True:
        answer = board.claim(pass_key, key, group)
        if answer.kind == "entry":
            return answer.entry, False
        if answer.kind == "lease":
            with _heartbeat(board, answer.lease, answer.renew_every_s):
                try:
                    entries = compute(list(answer.keys))
                except BaseException:
                    board.release(answer.lease)  # the next claimant decodes instead of waiting for the expiry
                    raise
            board.put(pass_key, entries, answer.lease)
            return entries[key], True
        waited = clock() - start
        if waited > max_wait_s:
            raise PassWaitTimeout(
                f"waited {waited:.0f} s for another trial to decode beam pass {pass_key}, which it still holds "
                f"(alive but not finishing); the bound is search.decoding.board.MAX_WAIT_S = {max_wait_s:.0f} s"
            )
        sleep(poll_s)


@contextlib.contextmanager
def _heartbeat(board: Board, lease: int, every_s: float) -> Iterator[None]:
    """Renew ``lease`` every ``every_s`` seconds from a daemon thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                board.renew(lease)
            except Exception:  # the board is gone (the sweep ended): the decode still finishes, nobody to tell
                return

    thread = threading.Thread(target=beat, name=f"pass-lease-{lease}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class RemoteBoard:
    """A :class:`PassBoard` actor, called like the plain class: each call waits for the actor's answer."""

    def __init__(self, actor: Any):
        self.actor = actor

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.actor, method).remote(*args))

    def claim(self, pass_key: str, key: str, group: Sequence[str]) -> Answer:
        return self._call("claim", pass_key, key, list(group))

    def renew(self, lease: int) -> bool:
        return self._call("renew", lease)

    def put(self, pass_key: str, entries: dict[str, dict], lease: int | None = None) -> None:
        self._call("put", pass_key, entries, lease)

    def release(self, lease: int) -> None:
        self._call("release", lease)

    def stats(self) -> dict[str, int]:
        return self._call("stats")


def create_board(ttl_s: float = LEASE_TTL_S) -> tuple[str, Any]:
    """``(name, actor handle)`` of a new board, on this (the driver's) node; keep the handle for the board to live.

    A non-detached actor is fate-shared with its owner: created here by the driver, it lives as long as the sweep.
    It takes no CPU (``num_cpus=0``) so it never holds back a trial, and is pinned to the driver's node so that losing
    a worker node never loses the board.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name = f"search-passes-{uuid.uuid4().hex}"
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    options = {"name": name, "namespace": NAMESPACE, "num_cpus": 0, "scheduling_strategy": here}
    # Not waited for: a named actor's name is registered before .remote() returns, and calls wait until it is up,
    # so the board starts while the trials' workers do.
    return name, ray.remote(PassBoard).options(**options).remote(ttl_s)


_OPENED: dict[str, RemoteBoard | None] = {}  # per process: a reused trial worker looks its board up once


def open_board(name: str | None) -> RemoteBoard | None:
    """The board called ``name``, or None outside a sweep (``name`` None, or no Ray) or when no such board exists.

    A board can be missing when a resumed sweep restores trials whose settings name the board of the interrupted run
    (Tune keeps a restored trial's config); the caller then coordinates through its machine's files.
    """
    if name is None:
        return None
    import ray

    if not ray.is_initialized():  # a config copied from a sweep's trial, decoded on its own
        return None
    if name not in _OPENED:
        try:
            _OPENED[name] = RemoteBoard(ray.get_actor(name, namespace=NAMESPACE))
        except ValueError:  # Ray's answer for "no actor of that name"
            _OPENED[name] = None
    return _OPENED[name]


__all__ = [
    "HEARTBEATS_PER_TTL", "LEASE_TTL_S", "MAX_WAIT_S", "NAMESPACE", "POLL_S", "RECORD", "Answer", "Board", "PassBoard",
    "PassWaitTimeout", "RemoteBoard", "create_board", "open_board", "share",
]  # fmt: skip
