"""SQLite-specific behaviour: URL parsing, WAL, threads, a multi-process race and kill -9."""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import signal
import sqlite3
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.stores.base import SCHEMA_VERSION, IdempotencyStore, RecordStatus
from stormproof.stores.sqlite import DEFAULT_TABLE, SQLiteStore, parse_url

T0 = 1_700_000_000.0
LEASE = 30.0
TTL = 3600.0
PROCESSES = 8
KEYS = 200
CHILD_TIMEOUT = 60.0  # generous upper bound for waits; never reached when things work


def _url(tmp_path: Path, query: str = "") -> str:
    return f"sqlite:///{tmp_path / 'race.db'}{query}"


# -- URL parsing -------------------------------------------------------------------------------


def test_three_slashes_then_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = parse_url("sqlite:///data/app.db")
    assert parsed.path == str(tmp_path / "data" / "app.db")
    assert parsed.table == DEFAULT_TABLE == "stormproof_idempotency"
    assert parsed.synchronous == "NORMAL"
    assert parsed.busy_timeout_ms == 5000


def test_four_slashes_is_an_absolute_path() -> None:
    assert parse_url("sqlite:////var/lib/app/sp.db").path == "/var/lib/app/sp.db"


def test_the_path_is_percent_decoded() -> None:
    assert parse_url("sqlite:////tmp/a%20b%3F%23.db").path == "/tmp/a b?#.db"


def test_query_parameters() -> None:
    parsed = parse_url("sqlite:////tmp/x.db?table=Orders_2&synchronous=full&busy_timeout_ms=250")
    assert (parsed.table, parsed.synchronous, parsed.busy_timeout_ms) == ("Orders_2", "FULL", 250)


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("sqlite://host/x.db", "url"),
        ("sqlite:x.db", "url"),
        ("sqlite:///x.db#part", "url"),
        ("sqlite:///", "path"),
        ("sqlite:////tmp/dir/", "path"),
        ("sqlite:///:memory:", "path"),
        ("sqlite:///x.db?table=1st", "table"),
        ("sqlite:///x.db?table=a-b", "table"),
        ("sqlite:///x.db?table=a;drop", "table"),
        ("sqlite:///x.db?table=", "table"),
        ("sqlite:///x.db?table=" + "t" * 64, "table"),
        ("sqlite:///x.db?table=stormproof_schema", "table"),
        ("sqlite:///x.db?table=a&table=b", "table"),
        ("sqlite:///x.db?synchronous=OFF", "synchronous"),
        ("sqlite:///x.db?synchronous=", "synchronous"),
        ("sqlite:///x.db?busy_timeout_ms=-1", "busy_timeout_ms"),
        ("sqlite:///x.db?busy_timeout_ms=1.5", "busy_timeout_ms"),
        ("sqlite:///x.db?busy_timeout_ms=99999999999", "busy_timeout_ms"),
        ("sqlite:///x.db?prefix=sp:", "prefix"),
        ("sqlite:///x.db?table", "url"),
    ],
)
def test_bad_url_parts_raise_config_error_naming_the_field(url: str, field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        stores.open(url)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_opening_creates_nothing_and_init_creates_the_schema(tmp_path: Path) -> None:
    store = stores.open(_url(tmp_path))
    assert isinstance(store, SQLiteStore) and isinstance(store, IdempotencyStore)
    assert not (tmp_path / "race.db").exists()
    try:
        assert store.schema_version() is None
        store.init()
        assert store.schema_version() == SCHEMA_VERSION
        other_table = SQLiteStore(_url(tmp_path, "?table=other"))
        assert other_table.schema_version() is None  # versions are recorded per table
        other_table.close()
    finally:
        store.close()


# -- connection setup --------------------------------------------------------------------------


@pytest.mark.parametrize(("synchronous", "level"), [("NORMAL", 1), ("FULL", 2)])
def test_wal_is_on_and_synchronous_is_applied(tmp_path: Path, synchronous: str, level: int) -> None:
    store = SQLiteStore(_url(tmp_path, f"?synchronous={synchronous}&busy_timeout_ms=1234"))
    store.init()
    try:
        conn = store._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    finally:
        store.close()
    # WAL is a property of the file: a plain connection sees it too.
    raw = sqlite3.connect(tmp_path / "race.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_threads_get_their_own_connections_and_one_claim_wins(tmp_path: Path) -> None:
    store = SQLiteStore(_url(tmp_path))
    store.init()
    wins: dict[str, list[int]] = {}
    connections: set[int] = set()
    barrier = threading.Barrier(6)

    def worker(token: str) -> None:
        connections.add(id(store._conn()))
        barrier.wait(timeout=CHILD_TIMEOUT)
        wins[token] = [
            i
            for i in range(50)
            if store.claim(f"k{i}", "h", token, T0, lease=LEASE, ttl=TTL).claimed
        ]

    threads = [threading.Thread(target=worker, args=(f"t{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=CHILD_TIMEOUT)
    try:
        assert len(connections) == 6
        claimed = sorted(i for won in wins.values() for i in won)
        assert claimed == list(range(50))
    finally:
        store.close()  # closes the other threads' connections too
    assert store._connections == []
    # A closed store reconnects on the next call.
    assert store.get("k0") is not None
    store.close()


# -- many processes on one file ----------------------------------------------------------------


def _race_worker(url: str, token: str, barrier: Any, results: Any) -> None:
    try:
        store = SQLiteStore(url)
        store.get("warm-up")  # connect before the race starts
        order = list(range(KEYS))
        random.Random(token).shuffle(order)  # contention, not security
        barrier.wait(timeout=CHILD_TIMEOUT)
        won: list[int] = []
        seen: dict[int, str] = {}
        for i in order:
            claim = store.claim(f"key-{i}", "h", token, T0, lease=LEASE, ttl=TTL)
            if claim.claimed:
                won.append(i)
            else:
                seen[i] = claim.record.token
        store.close()
        results.put((token, won, seen, None))
    except BaseException as error:
        results.put((token, [], {}, repr(error)))


def test_processes_racing_on_one_file_claim_each_key_exactly_once(tmp_path: Path) -> None:
    url = _url(tmp_path)
    store = SQLiteStore(url)
    store.init()
    store.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_race_worker, args=(url, f"proc-{n}", barrier, results))
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=CHILD_TIMEOUT) for _ in workers]
    except queue.Empty:
        pytest.fail(f"a worker did not report; exit codes {[w.exitcode for w in workers]}")
    finally:
        for worker in workers:
            worker.join(timeout=CHILD_TIMEOUT)
    assert [error for *_, error in outcomes if error] == []
    assert all(worker.exitcode == 0 for worker in workers)

    winner: dict[int, str] = {}
    for token, won, _seen, _error in outcomes:
        for i in won:
            assert i not in winner, f"key-{i} claimed by {winner[i]} and {token}"
            winner[i] = token
    assert sorted(winner) == list(range(KEYS))
    for token, won, seen, _error in outcomes:
        assert len(won) + len(seen) == KEYS
        for i, holder in seen.items():
            assert holder == winner[i], f"{token} saw key-{i} held by {holder}"

    reopened = SQLiteStore(url)
    try:
        for i, token in winner.items():
            record = reopened.get(f"key-{i}")
            assert record is not None and record.token == token
            assert record.status is RecordStatus.IN_PROGRESS
    finally:
        reopened.close()


def _complete_then_wait_to_be_killed(url: str, pipe: Connection) -> None:
    store = SQLiteStore(url)
    assert store.claim("paid", "h", "child", T0, lease=LEASE, ttl=TTL).claimed
    assert store.complete("paid", "child", '{"charged": 42}', T0 + 1, ttl=TTL)
    assert store.claim("orphan", "h", "child", T0, lease=LEASE, ttl=TTL).claimed
    pipe.send("completed")
    pipe.recv()  # never answered: the parent kills this process


def test_an_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    url = _url(tmp_path)
    store = SQLiteStore(url)
    store.init()
    store.close()  # the parent holds no connection: the reopen below recovers from the files
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_complete_then_wait_to_be_killed, args=(url, child_end))
    child.start()
    try:
        assert parent_end.poll(CHILD_TIMEOUT), "the child never reported"
        assert parent_end.recv() == "completed"
        os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(timeout=CHILD_TIMEOUT)
        parent_end.close()
        child_end.close()
    assert child.exitcode == -signal.SIGKILL

    reopened = SQLiteStore(url)
    try:
        paid = reopened.get("paid")
        assert paid is not None and paid.status is RecordStatus.COMPLETED
        assert paid.result == '{"charged": 42}' and paid.token == "child"
        duplicate = reopened.claim("paid", "h", "retry", T0 + 2, lease=LEASE, ttl=TTL)
        assert not duplicate.claimed and duplicate.record.result == '{"charged": 42}'
        # The killed worker's unfinished claim stays protected until its lease runs out.
        orphan = reopened.get("orphan")
        assert orphan is not None and orphan.status is RecordStatus.IN_PROGRESS
        assert not reopened.claim(
            "orphan", "h", "new", T0 + LEASE - 1, lease=LEASE, ttl=TTL
        ).claimed
        assert reopened.claim("orphan", "h", "new", T0 + LEASE, lease=LEASE, ttl=TTL).claimed
    finally:
        reopened.close()
