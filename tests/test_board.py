"""The pass board: one decode per beam pass across nodes, leases that expire when their holder dies, waits that end
(search/decoding/board.py), and the decode sweeps that use it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from search.decoding.board import (
    HEARTBEATS_PER_TTL,
    NAMESPACE,
    PassBoard,
    PassWaitTimeout,
    create_board,
    open_board,
    share,
)


class Clock:
    """A clock the test moves; ``sleep`` moves it too."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Serialized:
    """A board called from several threads one call at a time, as the actor serves its calls."""

    def __init__(self, board: PassBoard) -> None:
        self.board, self.lock = board, threading.Lock()

    def __getattr__(self, name: str):
        method = getattr(self.board, name)

        def call(*args):
            with self.lock:
                return method(*args)

        return call


# ------------------------------------------------------------------------------------------------ the board's logic


def test_a_lease_covers_the_free_configs_of_the_group_and_others_wait():
    board = PassBoard(ttl_s=30, clock=Clock())
    first = board.claim("p", "a", ["a", "b", "c"])
    assert first.kind == "lease" and first.keys == ("a", "b", "c")
    assert first.renew_every_s == 30 / HEARTBEATS_PER_TTL
    assert board.claim("p", "b", ["b", "c", "d"]).kind == "wait"  # b is being decoded
    second = board.claim("p", "d", ["d", "a", "e"])  # d is free: a lease on d and e, not on a (held)
    assert second.kind == "lease" and second.keys == ("d", "e")
    assert board.claim("q", "a", ["a"]).kind == "lease"  # another pass: its own configs
    assert board.stats() == {"entries": 0, "leases": 3, "expired": 0, "held": 3}


def test_put_ends_the_lease_and_answers_with_entries():
    board = PassBoard(ttl_s=30, clock=Clock())
    lease = board.claim("p", "a", ["a", "b"]).lease
    board.put("p", {"a": {"bleu": 1.0}, "b": {"bleu": 2.0}}, lease)
    assert board.claim("p", "b", ["b"]).entry == {"bleu": 2.0}
    assert board.claim("q", "b", ["b"]).kind == "lease"  # entries belong to their pass
    board.put("p", {"b": {"bleu": 9.0}})  # a late duplicate does not replace the first entry
    assert board.claim("p", "b", ["b"]).entry == {"bleu": 2.0}
    assert not board.renew(lease)  # put ended it
    assert board.stats()["entries"] == 2


def test_a_lease_expires_without_renewal_and_another_claimant_takes_over():
    clock = Clock()
    board = PassBoard(ttl_s=30, clock=clock)
    dead = board.claim("p", "a", ["a", "b"]).lease
    for _ in range(5):  # renewed: held however long it decodes
        clock.now += 29
        assert board.renew(dead)
        assert board.claim("p", "b", ["b"]).kind == "wait"
    clock.now += 29.9  # its holder died: no renewal since
    assert board.claim("p", "b", ["b"]).kind == "wait"
    clock.now += 0.1
    takeover = board.claim("p", "b", ["b", "a"])
    assert takeover.kind == "lease" and takeover.keys == ("b", "a")
    assert not board.renew(dead)  # too late: its configs are someone else's
    board.put("p", {"a": {"by": "dead"}}, dead)  # a holder that was only slow still gives its entries
    board.put("p", {"a": {"by": "takeover"}, "b": {"by": "takeover"}}, takeover.lease)
    assert board.claim("p", "a", ["a"]).entry == {"by": "dead"}
    assert board.stats() == {"entries": 2, "leases": 2, "expired": 1, "held": 0}


def test_release_frees_the_configs_at_once():
    board = PassBoard(ttl_s=30, clock=Clock())
    lease = board.claim("p", "a", ["a", "b"]).lease
    board.release(lease)
    assert board.claim("p", "b", ["b"]).kind == "lease"
    assert board.stats()["expired"] == 0


# ------------------------------------------------------------------------------------------------ share()


def test_share_computes_under_a_lease_then_answers_from_the_board():
    board = PassBoard(ttl_s=30, clock=Clock())
    calls = []

    def compute(keys):
        calls.append(keys)
        return {k: {"key": k} for k in keys}

    assert share(board, "p", "a", ["a", "b"], compute) == ({"key": "a"}, True)
    assert share(board, "p", "b", ["b", "a"], compute) == ({"key": "b"}, False)
    assert calls == [["a", "b"]]


def test_share_waits_for_the_holder_and_takes_its_entry():
    clock = Clock()
    board = PassBoard(ttl_s=30, clock=clock)
    holder = board.claim("p", "a", ["a", "b"]).lease
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.sleep(seconds)
        if len(sleeps) == 3:
            board.put("p", {"a": {"key": "a"}, "b": {"key": "b"}}, holder)

    never = lambda keys: pytest.fail("the waiter decoded")  # noqa: E731
    assert share(board, "p", "b", ["b"], never, clock=clock, sleep=sleep, poll_s=0.5) == ({"key": "b"}, False)
    assert sleeps == [0.5, 0.5, 0.5]


def test_share_takes_over_a_dead_holders_pass():
    clock = Clock()
    board = PassBoard(ttl_s=30, clock=clock)
    board.claim("p", "a", ["a", "b"])  # its holder is killed at once
    entry, computed = share(board, "p", "b", ["b"], lambda keys: {k: {"key": k} for k in keys}, clock=clock,
                            sleep=clock.sleep, poll_s=1.0)  # fmt: skip
    assert (entry, computed) == ({"key": "b"}, True)
    assert 30 <= clock.now <= 31 and board.stats()["expired"] == 1


def test_share_raises_after_the_wait_bound_when_the_holder_lives_but_never_finishes():
    clock = Clock()
    board = PassBoard(ttl_s=30, clock=clock)
    holder = board.claim("p", "a", ["a"]).lease

    def sleep(seconds):  # the holder keeps renewing while the waiter sleeps
        clock.sleep(seconds)
        assert board.renew(holder)

    with pytest.raises(PassWaitTimeout, match=r"waited 101 s .* beam pass p.*MAX_WAIT_S = 100 s"):
        share(board, "p", "a", ["a"], lambda keys: {}, clock=clock, sleep=sleep, poll_s=1.0, max_wait_s=100)


def test_share_releases_the_lease_when_the_decode_fails():
    board = PassBoard(ttl_s=30, clock=Clock())

    def fail(keys):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        share(board, "p", "a", ["a", "b"], fail)
    assert board.claim("p", "b", ["b"]).kind == "lease"  # no wait for an expiry


def test_the_holders_heartbeat_keeps_its_lease_past_the_ttl():
    board = Serialized(PassBoard(ttl_s=0.3))  # real time: renewed every 0.05 s
    seen = []

    def compute(keys):
        time.sleep(1.0)  # > 3 lifetimes of an unrenewed lease
        seen.append(board.claim("p", "b", ["b"]).kind)
        return {k: {"key": k} for k in keys}

    assert share(board, "p", "a", ["a", "b"], compute) == ({"key": "a"}, True)
    assert seen == ["wait"] and board.stats()["expired"] == 0


def test_no_board_outside_a_sweep():
    assert open_board(None) is None


# ------------------------------------------------------------------------------------------------ the actor in Ray


@pytest.mark.ray
def test_a_killed_holder_is_taken_over_by_a_waiting_claimant(ray_session, tmp_path):
    ray = ray_session
    name, actor = create_board(ttl_s=2.0)
    pid_file = tmp_path / "holder.pid"

    @ray.remote(num_cpus=0, max_retries=0)
    def holder(name: str, pid_file: str) -> None:
        def decode_forever(keys):
            Path(pid_file).write_text(str(os.getpid()))
            time.sleep(3600)

        share(open_board(name), "p", "a", ["a", "b"], decode_forever)

    @ray.remote(num_cpus=0, max_retries=0)
    def waiter(name: str) -> tuple[dict, bool]:
        decode = lambda keys: {k: {"by": "waiter"} for k in keys}  # noqa: E731
        return share(open_board(name), "p", "b", ["b", "a"], decode, poll_s=0.1)  # takes over the whole pass

    held = holder.remote(name, str(pid_file))
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the holder never got its lease"
        time.sleep(0.1)
    waited = waiter.remote(name)
    ready, _ = ray.wait([waited], timeout=6.0)  # 3 lease lifetimes: the heartbeat keeps the live holder's lease
    assert not ready
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # no finally block runs: the lease must expire
    assert ray.get(waited, timeout=30) == ({"by": "waiter"}, True)
    assert ray.get(actor.stats.remote()) == {"entries": 2, "leases": 2, "expired": 1, "held": 0}
    with pytest.raises(ray.exceptions.RayError):
        ray.get(held, timeout=30)
    assert ray.get_actor(name, namespace=NAMESPACE)._actor_id == actor._actor_id
    ray.kill(actor)


# ------------------------------------------------------------------------------------------------ decode sweeps

GRID = {"num_beams": [2, 3], "length_penalty": [0.6, 1.0]}  # two beam passes of two configs each
SETTINGS = {"limit": 12, "batch_size": 5, "max_new_tokens": 8, "max_source_length": 24}  # tiny_model: 32 positions


@pytest.mark.ray
@pytest.mark.slow
def test_trials_without_a_shared_disk_decode_each_pass_once(ray_session, tiny_model, tmp_path):
    """Each trial gets its own cache directory (as on nodes that share no disk): only the board shares passes."""
    from ray import tune

    from search.trainables import decode as decode_module
    from search.trainables import decode_config

    settings, board = decode_config.start(decode_config.prepare(SETTINGS, GRID))
    nodes = tmp_path / "nodes"

    def on_own_disk(config: dict) -> None:
        import uuid

        own_disk = str(nodes / uuid.uuid4().hex)
        decode_module.decode({**config, "settings": {**config["settings"], "cache_dir": own_disk}})

    space = {"model": str(tiny_model), "data": {"corpus": "bible-en-es"}, "settings": settings}
    tuner = tune.Tuner(
        tune.with_resources(on_own_disk, {"cpu": 1}),
        param_space={**space, **{k: tune.grid_search(v) for k, v in GRID.items()}},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 4 and not results.errors
    metrics = [r.metrics for r in results]
    assert sum(not m["from_cache"] for m in metrics) == 2  # one decode per pass; without the board: 4
    assert all(m["pass_configs"] == 2 for m in metrics)
    assert ray_session.get(board.stats.remote()) == {"entries": 6, "leases": 2, "expired": 0, "held": 0}  # +2 records
    assert len(list(nodes.iterdir())) == 4
    ray_session.kill(board)


@pytest.mark.ray
@pytest.mark.slow
def test_a_decode_sweep_shares_its_passes_through_the_board(run_sweep, tiny_model, tmp_path):
    """Through the runner: it starts the board, the trials share passes through it (no file lock is taken), and the
    board ends with the sweep."""
    import ray

    grid = "\n".join(f"  {k}: {{values: {v}}}" for k, v in GRID.items())
    results, run_dir = run_sweep(
        f"method: grid\nmetric: {{name: bleu, goal: maximize}}\nparameters:\n{grid}\ntrainable: decode\n"
        f"max_concurrent: 2\nresources: {{cpu: 1}}\nmodel: {tiny_model}\ndata: {{corpus: bible-en-es}}\n"
        f"settings: {SETTINGS}\n".replace("'", "")
    )
    assert len(results) == 4 and not results.errors
    assert sum(not r.metrics["from_cache"] for r in results) == 2  # the number of distinct beam passes
    names = {r.config["settings"]["pass_board"] for r in results}
    assert len(names) == 1 and next(iter(names)).startswith("search-passes-")
    decode_dir = tmp_path / "runs" / ".cache" / "decode"
    assert len(list(decode_dir.glob("*/*.json"))) == 4  # kept on disk for later runs
    assert not list(decode_dir.glob("*.lock"))  # the board, not the file lock, said who decodes
    with pytest.raises(ValueError):  # the board lived as long as the sweep
        ray.get_actor(next(iter(names)), namespace=NAMESPACE)
    assert open_board(next(iter(names))) is None  # a resumed trial naming it falls back to its machine's lock
