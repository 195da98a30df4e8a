"""PostgreSQL-specific store tests: URL parsing, concurrent init, multi-process races, kill -9.

The semantics shared by every back end are in ``test_conformance.py``; this module tests what
only a server-backed store has. Tests that need the server skip (or fail in CI) without it.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("psycopg", reason="the postgres extra is not installed")

from store_services import store_url

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.stores.base import SCHEMA_VERSION, RecordStatus
from stormproof.stores.postgres import DEFAULT_TABLE, PostgresStore, parse_url

T0 = 1_700_000_000.0
LEASE = 30.0
TTL = 3600.0
BASE = "postgresql://postgres@127.0.0.1:5432/test"


# -- URL parsing (no server needed) --------------------------------------------------------------


def test_own_parameters_are_stripped_and_the_rest_goes_to_libpq() -> None:
    parsed = parse_url(
        f"{BASE}?sslmode=disable&table=jobs_1&pool_min=2&application_name=a%20b"
        "&pool_max=5&pool_timeout=2.5&connect_timeout=3"
    )
    assert parsed.table == "jobs_1"
    assert (parsed.pool_min, parsed.pool_max, parsed.pool_timeout) == (2, 5, 2.5)
    assert parsed.conninfo == f"{BASE}?sslmode=disable&application_name=a%20b&connect_timeout=3"


def test_defaults() -> None:
    parsed = parse_url(BASE)
    assert parsed.conninfo == BASE
    assert parsed.table == DEFAULT_TABLE
    assert (parsed.pool_min, parsed.pool_max) == (1, 10)
    assert parse_url(f"{BASE}?pool_min=20").pool_max == 20
    assert parse_url("postgres://u@h/db?table=t").conninfo == "postgres://u@h/db"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("table=", "table"),
        ("table=bad-name", "table"),
        ("table=x%3BDROP%20TABLE%20y", "table"),
        ("table=1abc", "table"),
        (f"table={'a' * 64}", "table"),
        ("table=stormproof_schema", "table"),
        ("table=a&table=b", "table"),
        ("pool_min=x", "pool_min"),
        ("pool_min=-1", "pool_min"),
        ("pool_max=0", "pool_max"),
        ("pool_max=1.5", "pool_max"),
        ("pool_min=5&pool_max=2", "pool_max"),
        ("pool_timeout=0", "pool_timeout"),
        ("pool_timeout=nan", "pool_timeout"),
        ("pool_timeout=soon", "pool_timeout"),
        ("bogus=1", "url"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(query: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        stores.open(f"{BASE}?{query}")
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}:")


def test_opening_touches_no_server() -> None:
    store = stores.open("postgresql://nobody@127.0.0.1:1/none?table=t")
    assert isinstance(store, PostgresStore)
    store.close()


# -- against the server --------------------------------------------------------------------------


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    url = store_url("postgresql", tmp_path)
    try:
        yield url
    finally:
        store = PostgresStore(url)
        store.drop()
        store.close()


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url)
    store.init()
    try:
        yield store
    finally:
        store.close()


def test_concurrent_init_from_four_threads_is_safe(pg_url: str) -> None:
    opened = [PostgresStore(pg_url) for _ in range(4)]
    barrier = threading.Barrier(len(opened))
    errors: list[BaseException] = []

    def run(store: PostgresStore) -> None:
        try:
            barrier.wait()
            store.init()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(store,)) for store in opened]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert errors == []
        assert all(store.schema_version() == SCHEMA_VERSION for store in opened)
        assert opened[0].claim("k", "h", "t", T0, lease=LEASE, ttl=TTL).claimed
    finally:
        for store in opened:
            store.close()


def test_schema_version_is_none_before_init_and_after_drop(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        assert store.schema_version() is None
        store.init()
        assert store.schema_version() == SCHEMA_VERSION
        store.drop()
        assert store.schema_version() is None
    finally:
        store.close()


@pytest.mark.parametrize(
    "key",
    ["nul\x00inside", "\x00", "%nul%starts-with-the-marker", "%nul%\x00%00%25", "100%25 plain"],
)
def test_nul_characters_and_the_escape_marker_round_trip(pg: PostgresStore, key: str) -> None:
    first = pg.claim(key, f"h{key}", f"t{key}", T0, lease=LEASE, ttl=TTL)
    assert first.claimed and first.record.key == key and first.record.token == f"t{key}"
    other = pg.claim(key, "h", "other", T0 + 1, lease=LEASE, ttl=TTL)
    assert not other.claimed and other.record.payload_hash == f"h{key}"
    assert pg.complete(key, f"t{key}", f"r{key}", T0 + 2, ttl=TTL)
    record = pg.get(key)
    assert record is not None and record.key == key and record.result == f"r{key}"


def test_plain_keys_are_stored_as_given(pg: PostgresStore) -> None:
    import psycopg

    pg.claim("order-7", "h", "tok", T0, lease=LEASE, ttl=TTL)
    conninfo = parse_url(pg.url).conninfo
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(f'SELECT key, status, token FROM "{pg.table}"').fetchone()
    assert row == ("order-7", "in_progress", "tok")


def test_a_closed_store_reopens_on_next_use(pg: PostgresStore) -> None:
    pg.claim("k", "h", "t", T0, lease=LEASE, ttl=TTL)
    pg.close()
    pg.close()
    record = pg.get("k")
    assert record is not None and record.status is RecordStatus.IN_PROGRESS


def test_a_duplicate_of_a_live_record_reads_it_without_locking_it(pg: PostgresStore) -> None:
    # The claim of a held key is read-only: no row lock, so no waiting for (or WAL flush after)
    # it. With lock_timeout set, a claim that tried to lock the row would fail instead.
    import psycopg

    assert pg.claim("k", "h", "owner", T0, lease=LEASE, ttl=TTL).claimed
    assert pg.complete("k", "owner", '"done"', T0 + 1, ttl=TTL)
    strict = PostgresStore(f"{pg.url}&options=-c%20lock_timeout%3D1000")
    with psycopg.connect(BASE) as other:
        other.execute(f'SELECT 1 FROM "{pg.table}" WHERE key = %s FOR UPDATE', ("k",))
        try:
            duplicate = strict.claim("k", "h", "dup", T0 + 2, lease=LEASE, ttl=TTL)
        finally:
            strict.close()
        other.rollback()
    assert not duplicate.claimed
    assert duplicate.record.status is RecordStatus.COMPLETED
    assert duplicate.record.result == '"done"'


def test_a_claim_that_loses_to_a_row_its_snapshot_missed_reads_the_winner(
    pg: PostgresStore,
) -> None:
    import psycopg

    results: list[Any] = []
    with psycopg.connect(BASE) as other:
        other.execute(
            f'INSERT INTO "{pg.table}" (key, status, payload_hash, token, expires_at,'
            " lease_expires_at) VALUES ('k', 'in_progress', 'h', 'winner', %s, %s)",
            (T0 + TTL, T0 + LEASE),
        )
        # Not committed yet: the claim below does not see the row, and its insert waits on it.
        claimer = threading.Thread(
            target=lambda: results.append(pg.claim("k", "h", "loser", T0, lease=LEASE, ttl=TTL))
        )
        claimer.start()
        with psycopg.connect(BASE, autocommit=True) as watcher:
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline:
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE %s",
                    (f'%"{pg.table}"%',),
                ).fetchone()
                if waiting is not None and waiting[0] > 0:
                    break
                time.sleep(0.01)  # synchronisation with the server, not a timed assertion
            else:
                pytest.fail("the claim never waited for the uncommitted row")
        other.commit()
        claimer.join(timeout=20.0)
    assert len(results) == 1
    claim = results[0]
    assert not claim.claimed
    assert claim.record.token == "winner" and claim.record.status is RecordStatus.IN_PROGRESS


# -- several processes ---------------------------------------------------------------------------

PROCESSES = 8
KEYS = 200


def _race_worker(url: str, index: int, barrier: Barrier, results: Any) -> None:
    store = PostgresStore(url)
    try:
        won: list[int] = []
        store.get("warm-up")  # connect first, so that the race starts at the barrier
        # Each process walks the keys in its own order, so that claims of one key collide at
        # varied moments instead of one process running ahead of the rest.
        order = list(range(KEYS))
        random.Random(index).shuffle(order)
        barrier.wait(timeout=60)
        for number in order:
            claim = store.claim(
                f"key-{number}", "h", f"proc-{index}", time.time(), lease=60, ttl=600
            )
            if claim.claimed:
                won.append(number)
            else:
                assert claim.record.token != f"proc-{index}"
        results.put((index, won))
    finally:
        store.close()


def test_processes_racing_for_the_same_keys_have_exactly_one_winner_each(pg: PostgresStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_race_worker, args=(pg.url, index, barrier, results))
        for index in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        won = dict(results.get(timeout=60) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    winners: dict[int, int] = {}
    for index, numbers in won.items():
        for number in numbers:
            assert number not in winners, f"key-{number} was claimed twice"
            winners[number] = index
    assert sorted(winners) == list(range(KEYS))
    for number, index in winners.items():
        record = pg.get(f"key-{number}")
        assert record is not None and record.token == f"proc-{index}"


def _complete_and_report(url: str, conn: Connection) -> None:
    store = PostgresStore(url)
    claim = store.claim("durable", "h", "child", time.time(), lease=60, ttl=600)
    done = claim.claimed and store.complete(
        "durable", "child", '{"ok": true}', time.time(), ttl=600
    )
    conn.send(done)
    threading.Event().wait(60)  # blocks until the parent kills it; the pool is never closed


def test_a_completed_record_survives_kill_9_of_its_writer(pg: PostgresStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_complete_and_report, args=(pg.url, child_end))
    child.start()
    assert child.pid is not None
    try:
        assert parent_end.poll(30), "the child did not report"
        assert parent_end.recv() is True
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    fresh = PostgresStore(pg.url)
    try:
        record = fresh.get("durable")
    finally:
        fresh.close()
    assert record is not None
    assert record.status is RecordStatus.COMPLETED
    assert record.token == "child" and record.result == '{"ok": true}'
