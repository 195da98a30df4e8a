"""The async store API on every back end: ``stores.open_async``, idempotent async calls through
it, and a PostgreSQL claim that waits on a row lock without holding the event loop.

(The protocol's semantics are covered by ``test_conformance.py``, whose ``store`` fixture runs
every scenario through ``open_async`` too.)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from async_shim import drop
from store_services import store_url

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.events.idempotency import Idempotency, IdempotencyConfig
from stormproof.policies.backoff import Constant
from stormproof.stores.aio import AsyncIdempotencyStore, ThreadedStore, is_async_store
from stormproof.stores.base import RecordStatus
from stormproof.stores.postgres import parse_url
from stormproof.stores.postgres_async import AsyncPostgresStore
from stormproof.stores.redis_async import AsyncRedisStore

#: Upper bound of every wait in this module: reached only when something is broken.
BOUND = 10.0


@pytest_asyncio.fixture
async def astore(url: str) -> AsyncIterator[AsyncIdempotencyStore]:
    opened = stores.open_async(url)
    await opened.init()
    try:
        yield opened
    finally:
        await drop(opened)
        await opened.close()


@pytest.mark.asyncio
async def test_open_async_is_native_on_postgres_and_redis(
    backend: str, astore: AsyncIdempotencyStore
) -> None:
    native = {"postgresql": AsyncPostgresStore, "redis": AsyncRedisStore}
    assert isinstance(astore, native.get(backend, ThreadedStore))
    assert is_async_store(astore)
    assert astore.url.startswith(backend if backend != "postgresql" else "postgres")


def test_blocking_stores_are_not_async_and_the_adapter_takes_only_them() -> None:
    blocking = stores.open("memory://")
    assert not is_async_store(blocking)
    adapter = ThreadedStore(blocking)
    with pytest.raises(ConfigError) as caught:
        ThreadedStore(adapter)  # type: ignore[arg-type]
    assert caught.value.field == "store"
    with pytest.raises(ConfigError, match="sqlite"):
        stores.open_async("mysql://localhost/db")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("postgresql://127.0.0.1/test?pool_max=0", "pool_max"),
        ("postgresql://127.0.0.1/test?table=1bad", "table"),
        ("redis://127.0.0.1:6379/0?no_such_option=1", "no_such_option"),
        ("sqlite:///relative.db?table=1bad", "table"),
    ],
)
def test_open_async_checks_urls_as_open_does(url: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        stores.open_async(url)
    assert caught.value.field == field


@pytest.mark.asyncio
async def test_concurrent_duplicates_run_once_on_every_back_end(
    astore: AsyncIdempotencyStore,
) -> None:
    config = IdempotencyConfig(on_in_progress="wait", wait_backoff=Constant(0.005))
    engine = Idempotency(astore, config, rng=random.Random(7))
    runs: dict[str, int] = {}

    async def charge(order: str, amount: int) -> dict[str, object]:
        runs[order] = runs.get(order, 0) + 1
        for _ in range(3):
            await asyncio.sleep(0)  # let the duplicates reach the store meanwhile
        return {"order": order, "charged": amount}

    orders = [f"order-{i}" for i in range(12)]
    calls = [
        engine.arun(order, {"amount": 10 + i}, charge, order, 10 + i)
        for _ in range(4)
        for i, order in enumerate(orders)
    ]
    results = await asyncio.wait_for(asyncio.gather(*calls), BOUND)
    assert runs == dict.fromkeys(orders, 1)
    assert results == [
        {"order": order, "charged": 10 + i} for _ in range(4) for i, order in enumerate(orders)
    ]
    record = await astore.get("order-3")
    assert record is not None and record.status is RecordStatus.COMPLETED
    assert record.result is not None and '"charged": 13' in record.result


@pytest.mark.asyncio
async def test_a_failed_async_call_frees_its_key_on_every_back_end(
    astore: AsyncIdempotencyStore,
) -> None:
    engine = Idempotency(astore)
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise TimeoutError("upstream")
        return "ok"

    with pytest.raises(TimeoutError):
        await engine.arun("job", {}, flaky)
    assert await astore.get("job") is None
    assert await engine.arun("job", {}, flaky) == "ok"
    assert await engine.arun("job", {}, flaky) == "ok"
    assert attempts == [0, 1]


# -- PostgreSQL: the loop stays free while a claim waits at the server ---------------------------


class RecordingPostgresStore(AsyncPostgresStore):
    """Sets ``released`` when a release has been committed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.released = asyncio.Event()

    async def release(self, key: str, token: str) -> bool:
        done = await super().release(key, token)
        self.released.set()
        return done


@pytest_asyncio.fixture
async def held_key(tmp_path: Path) -> AsyncIterator[tuple[RecordingPostgresStore, HeldRow]]:
    """A native PostgreSQL store, and another session holding the row of key ``held``."""
    url = store_url("postgresql", tmp_path)
    store = RecordingPostgresStore(url)
    await store.init()
    held = await HeldRow.open(url, store.table)
    try:
        yield store, held
    finally:
        await held.close()
        await store.drop()
        await store.close()


class HeldRow:
    """A session that inserted the row of key ``held`` and keeps its transaction open.

    A claim of ``held`` (an ``INSERT ... ON CONFLICT``) waits for that transaction to end:
    a round trip that takes as long as the test wants, with no sleep anywhere.
    """

    def __init__(self, blocker: psycopg.AsyncConnection, observer: psycopg.AsyncConnection) -> None:
        self._blocker = blocker
        self._observer = observer
        self._table = ""

    @classmethod
    async def open(cls, url: str, table: str) -> HeldRow:
        conninfo = parse_url(url).conninfo
        blocker = await psycopg.AsyncConnection.connect(conninfo)  # a transaction per BEGIN
        observer = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        held = cls(blocker, observer)
        held._table = table
        await blocker.execute(
            psycopg.sql.SQL(
                "INSERT INTO {} (key, status, payload_hash, token, expires_at, lease_expires_at)"
                " VALUES ('held', 'in_progress', 'other', 'blocker', 0, 0)"
            ).format(psycopg.sql.Identifier(table))
        )
        return held

    async def waiters(self) -> int:
        """Sessions waiting for a lock in a statement on this test's table."""
        cursor = await self._observer.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            " AND query LIKE %s",
            (f"%{self._table}%",),
        )
        row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def wait_for_a_waiter(self) -> None:
        """Until a claim is blocked at the server (bounded)."""
        async with asyncio.timeout(BOUND):
            while await self.waiters() == 0:
                await asyncio.sleep(0.005)

    async def let_go(self) -> None:
        """Roll the insert back: the waiting claim proceeds and finds the key free."""
        await self._blocker.rollback()

    async def close(self) -> None:
        await self._blocker.close()
        await self._observer.close()


@pytest.mark.asyncio
async def test_the_loop_keeps_running_while_a_postgres_claim_waits(
    held_key: tuple[RecordingPostgresStore, HeldRow],
) -> None:
    store, held = held_key
    engine = Idempotency(store)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def job() -> str:
        return "done"

    ticking = asyncio.create_task(ticker())
    call = asyncio.create_task(engine.arun("held", {"n": 1}, job))
    try:
        await held.wait_for_a_waiter()
        # The claim is in flight, blocked on the row lock; the ticker goes on regardless.
        start = ticks
        async with asyncio.timeout(BOUND):
            while ticks < start + 1_000:
                await asyncio.sleep(0)
        assert not call.done()
        assert await held.waiters() == 1  # still waiting at the server
        await held.let_go()
        assert await asyncio.wait_for(call, BOUND) == "done"
    finally:
        ticking.cancel()
    record = await store.get("held")
    assert record is not None and record.status is RecordStatus.COMPLETED


@pytest.mark.asyncio
async def test_a_caller_cancelled_during_a_postgres_claim_gives_the_key_back(
    held_key: tuple[RecordingPostgresStore, HeldRow],
) -> None:
    store, held = held_key
    engine = Idempotency(store)
    ran: list[str] = []

    async def job() -> str:
        ran.append("ran")
        return "never stored"

    call = asyncio.create_task(engine.arun("held", {}, job))
    await held.wait_for_a_waiter()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await held.let_go()  # the claim goes through after its caller is gone ...
    await asyncio.wait_for(store.released.wait(), BOUND)  # ... and is released at once
    assert ran == []
    assert await store.get("held") is None
    assert (await store.claim("held", "h", "next", 0.0, lease=30, ttl=60)).claimed
