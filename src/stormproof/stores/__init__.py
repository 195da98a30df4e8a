"""Durable stores behind one small protocol, opened by URL.

    store = stormproof.stores.open("sqlite:////var/lib/app/stormproof.db")  # embedded default
    store = stormproof.stores.open("postgresql://user@host/db")             # psycopg 3, pooled
    store = stormproof.stores.open("redis://localhost:6379/0")               # redis-py
    store = stormproof.stores.open("dynamodb://table?region=us-east-1")      # boto3
    store = stormproof.stores.open("memory://")                              # tests
    store.init()                                                             # explicit, idempotent

Query parameters select a table (SQL) or key prefix (Redis): ``?table=...``, ``?prefix=...``,
so several applications or test runs can share one database; DynamoDB takes the table name as
the URL's host (``dynamodb://TABLE``). On PostgreSQL and Redis, concurrent calls of one store
share statements or pipelines (``?group_commit=N`` slots, default 2, ``0`` off): open one
store per process or event loop and share it between its threads or tasks. The heavy back ends
are optional extras (``stormproof[postgres]``, ``stormproof[redis]``, ``stormproof[aws]`` for
DynamoDB) imported only when their URL is opened.

For asyncio services, ``stormproof.stores.open_async(url)`` opens the same back ends behind the
async protocol (:class:`~stormproof.stores.aio.AsyncIdempotencyStore`, every method a
coroutine): natively on PostgreSQL (psycopg's ``AsyncConnectionPool``) and Redis
(``redis.asyncio``), and through :class:`~stormproof.stores.aio.ThreadedStore`
(``asyncio.to_thread``) for memory, SQLite and DynamoDB::

    store = stormproof.stores.open_async("postgresql://user@host/db")
    await store.init()
"""

from __future__ import annotations

from urllib.parse import urlsplit

from stormproof.errors import ConfigError
from stormproof.stores.aio import AsyncIdempotencyStore, ThreadedStore, is_async_store
from stormproof.stores.base import (
    SCHEMA_VERSION,
    Claim,
    IdempotencyRecord,
    IdempotencyStore,
    RecordStatus,
)
from stormproof.stores.memory import MemoryStore

__all__ = [
    "SCHEMA_VERSION",
    "AsyncIdempotencyStore",
    "Claim",
    "IdempotencyRecord",
    "IdempotencyStore",
    "MemoryStore",
    "RecordStatus",
    "ThreadedStore",
    "is_async_store",
    "open",
    "open_async",
]

_SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "redis", "dynamodb")


def open(url: str) -> IdempotencyStore:
    """Open the store at ``url``; unknown schemes list the supported ones.

    Opening does not create anything: call ``init()`` once (or ``stormproof stores init URL``).
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore(url)
    if scheme == "sqlite":
        from stormproof.stores.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from stormproof.stores.postgres import PostgresStore

        return PostgresStore(url)
    if scheme == "redis":
        from stormproof.stores.redis import RedisStore

        return RedisStore(url)
    if scheme == "dynamodb":
        from stormproof.stores.dynamodb import DynamoDBStore

        return DynamoDBStore(url)
    raise ConfigError(
        "url", f"scheme {scheme!r} is not supported; use one of {', '.join(_SCHEMES)}", url
    )


def open_async(url: str) -> AsyncIdempotencyStore:
    """Open the store at ``url`` behind the async protocol; the URLs are those of :func:`open`.

    PostgreSQL and Redis get their native asyncio stores; memory, SQLite and DynamoDB the
    blocking store in a :class:`~stormproof.stores.aio.ThreadedStore`. Opening connects to
    nothing: ``await store.init()`` once, from the event loop that will use the store.
    """
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        from stormproof.stores.postgres_async import AsyncPostgresStore

        return AsyncPostgresStore(url)
    if scheme == "redis":
        from stormproof.stores.redis_async import AsyncRedisStore

        return AsyncRedisStore(url)
    return ThreadedStore(open(url))
