"""A PostgreSQL store (psycopg 3 with a ``psycopg_pool`` connection pool).

URL: ``postgresql://user:password@host:port/dbname?table=name&pool_min=1&pool_max=10``.
stormproof's own query parameters are removed; everything else (``sslmode``,
``connect_timeout``, ``application_name``, ...) is passed to libpq unchanged:

* ``table`` -- the records table (default ``stormproof_idempotency``), a plain SQL identifier;
* ``pool_min`` / ``pool_max`` -- connections kept open / opened at most (default 1 and 10);
* ``pool_timeout`` -- seconds to wait for a connection from the pool (default 30).

The pool is opened on first use, so constructing a store touches no server. Each operation is
one short transaction, committed before the method returns. ``claim`` is a single statement: it
reads the key's row, and only when there is none or it is claimable runs an
``INSERT ... ON CONFLICT DO UPDATE ... WHERE <claimable>``, so concurrent claimers in any number
of processes are serialised by PostgreSQL's row lock: exactly one of them wins. A duplicate that
finds a live record therefore writes nothing and its commit waits for no WAL flush; in the rare
case where the row changed between the statement's snapshot and its insert, a second ``SELECT``
reads the winner. Statements are rendered once per store and prepared on the server on first
use (``prepare=True``), so a call sends only its parameters.

**Durability and throughput.** Every write commits with the server's ``synchronous_commit``
(``on`` by default): the call returns after the WAL is flushed, so an acknowledged claim or
result survives a crash of the database server. That flush bounds one thread to about one write
per flush latency (an idempotent call is two writes); concurrent callers share flushes (group
commit), so throughput grows with threads or processes up to ``pool_max`` connections.
``?options=-c%20synchronous_commit%3Doff`` in the URL makes the store's commits return before the
flush: about twice the single-thread rate, but a crash of the *server* (not of your process) can
then lose the last few hundred milliseconds of acknowledged claims and results (never corrupt
them; ``wal_writer_delay`` bounds the window at three times its value), after which a duplicate
may run again. Leave it on unless that is acceptable.

Schema: one table per ``table`` parameter, and a shared ``stormproof_schema`` table with one
``(name, version)`` row per records table. ``init`` takes a transaction-level advisory lock
around its DDL, so several processes may run it at once.

PostgreSQL ``text`` cannot hold NUL characters, which Python strings (and so keys) may contain.
Strings that contain NUL, or that start with the escape marker ``%nul%``, are stored escaped
(marker, then ``%`` as ``%25`` and NUL as ``%00``) and decoded when read; every other string is
stored as given, so records stay readable and queryable in SQL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus

__all__ = ["DEFAULT_TABLE", "PostgresStore", "PostgresURL", "parse_url"]

#: The records table used when the URL has no ``table`` parameter.
DEFAULT_TABLE: Final = "stormproof_idempotency"
_SCHEMA_TABLE: Final = "stormproof_schema"
_DEFAULT_POOL_MIN: Final = 1
_DEFAULT_POOL_MAX: Final = 10
_DEFAULT_POOL_TIMEOUT: Final = 30.0
#: The key of the advisory lock that serialises ``init`` (and ``drop``) between processes:
#: "stormprf" as a big-endian 64-bit integer.
_SCHEMA_LOCK: Final = int.from_bytes(b"stormprf", "big", signed=True)
_OWN_PARAMS: Final = ("table", "pool_min", "pool_max", "pool_timeout")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: How often ``claim`` retries when the row it lost to vanished before it could be read.
_CLAIM_ATTEMPTS: Final = 8

_MARKER: Final = "%nul%"
_UNESCAPE = re.compile("%(25|00)")


def _encode(text: str) -> str:
    """Make ``text`` storable in a ``text`` column (no NUL), reversibly."""
    if "\x00" not in text and not text.startswith(_MARKER):
        return text
    return _MARKER + text.replace("%", "%25").replace("\x00", "%00")


def _decode(stored: str) -> str:
    """Invert :func:`_encode`."""
    if not stored.startswith(_MARKER):
        return stored
    return _UNESCAPE.sub(lambda m: "%" if m.group(1) == "25" else "\x00", stored[len(_MARKER) :])


class PostgresURL:
    """A parsed store URL: the libpq conninfo and stormproof's own settings."""

    __slots__ = ("conninfo", "pool_max", "pool_min", "pool_timeout", "table")

    def __init__(
        self, conninfo: str, table: str, pool_min: int, pool_max: int, pool_timeout: float
    ) -> None:
        self.conninfo = conninfo
        self.table = table
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.pool_timeout = pool_timeout

    def __repr__(self) -> str:
        return (
            f"PostgresURL(table={self.table!r}, pool_min={self.pool_min}, "
            f"pool_max={self.pool_max}, pool_timeout={self.pool_timeout})"
        )


def _int_param(field: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(field, "must be an integer", raw) from None
    int_at_least(field, value, minimum)
    return value


def parse_url(url: str) -> PostgresURL:
    """Split ``url`` into the libpq conninfo and stormproof's parameters; ConfigError if bad."""
    parts: SplitResult = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("url", "must start with postgresql:// or postgres://", url)
    own: dict[str, str] = {}
    kept: list[str] = []
    for piece in parts.query.split("&") if parts.query else ():
        raw_name, _, raw_value = piece.partition("=")
        name = unquote(raw_name)
        if name in _OWN_PARAMS:
            if name in own:
                raise ConfigError(name, "is given more than once", url)
            own[name] = unquote(raw_value)
        else:
            kept.append(piece)  # passed to libpq exactly as written

    table = own.get("table", DEFAULT_TABLE)
    if not _IDENTIFIER.fullmatch(table):
        raise ConfigError(
            "table", "must be an SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63)", table
        )
    if table == _SCHEMA_TABLE:
        raise ConfigError("table", f"{_SCHEMA_TABLE!r} is reserved for the schema version", table)
    pool_min = _int_param("pool_min", own["pool_min"], 0) if "pool_min" in own else None
    pool_max = _int_param("pool_max", own["pool_max"], 1) if "pool_max" in own else None
    if pool_min is None:
        pool_min = _DEFAULT_POOL_MIN
    if pool_max is None:
        pool_max = max(_DEFAULT_POOL_MAX, pool_min)
    if pool_max < pool_min:
        raise ConfigError("pool_max", f"must be >= pool_min ({pool_min})", pool_max)
    pool_timeout = _DEFAULT_POOL_TIMEOUT
    if "pool_timeout" in own:
        try:
            pool_timeout = float(own["pool_timeout"])
        except ValueError:
            raise ConfigError("pool_timeout", "must be a number", own["pool_timeout"]) from None
        finite_above("pool_timeout", pool_timeout, 0.0)

    conninfo = urlunsplit(parts._replace(query="&".join(kept)))
    try:
        conninfo_to_dict(conninfo)  # libpq's own parser: unknown parameters, bad ports, ...
    except psycopg.ProgrammingError as error:
        raise ConfigError("url", f"is not a valid libpq URI: {error}", url) from None
    return PostgresURL(conninfo, table, pool_min, pool_max, pool_timeout)


_Row = tuple[Any, ...]


def _render(query: sql.Composed) -> bytes:
    """The statement's text, once: a ``Composed`` query is re-rendered on every execute."""
    # The identifiers are validated plain names, so their quoting needs no connection.
    return query.as_bytes(None)


def _record(row: _Row) -> IdempotencyRecord:
    key, status, payload_hash, token, expires_at, lease_expires_at, result = row
    return IdempotencyRecord(
        _decode(key),
        RecordStatus(status),
        _decode(payload_hash),
        _decode(token),
        float(expires_at),
        float(lease_expires_at),
        None if result is None else _decode(result),
    )


def _pool_options(config: PostgresURL) -> dict[str, Any]:
    """The pool settings of a store, for ``ConnectionPool`` and ``AsyncConnectionPool`` alike."""
    return {
        "min_size": config.pool_min,
        "max_size": config.pool_max,
        "timeout": config.pool_timeout,
        # Autocommit: a single statement is its own transaction, committed in the same round
        # trip; multi-statement work opens conn.transaction() explicitly.
        "kwargs": {"autocommit": True},
        "name": f"stormproof-{config.table}",
        "open": False,
    }


def _claim_params(
    key: str, payload_hash: str, token: str, now: float, lease: float, ttl: float
) -> dict[str, Any]:
    """The parameters of ``claim_or_read``."""
    return {
        "key": _encode(key),
        "hash": _encode(payload_hash),
        "token": _encode(token),
        "expires": now + ttl,
        "lease": now + lease,
        "now": now,
    }


def _claim_answer(
    row: _Row, key: str, payload_hash: str, token: str, params: dict[str, Any]
) -> Claim:
    """The ``Claim`` a row of ``claim_or_read`` stands for: (claimed, the record's columns)."""
    if row[0]:
        record = IdempotencyRecord(
            key, RecordStatus.IN_PROGRESS, payload_hash, token, params["expires"], params["lease"]
        )
        return Claim(True, record)
    return Claim(False, _record(row[1:]))


def _claim_gave_up(key: str) -> RuntimeError:
    return RuntimeError(f"claim of {key!r} kept racing with deletions; giving up")


def _finish_params(
    status: RecordStatus, key: str, token: str, result: str, now: float, ttl: float
) -> tuple[Any, ...]:
    """The parameters of ``finish`` (complete and fail)."""
    return (status.value, now + ttl, now, _encode(result), _encode(key), _encode(token))


def _extend_params(key: str, token: str, now: float, lease: float) -> tuple[Any, ...]:
    until = now + lease
    return (until, until, _encode(key), _encode(token))


#: Statements that do not depend on the table.
_LOCK_SCHEMA: Final = "SELECT pg_advisory_xact_lock(%s)"
_SCHEMA_EXISTS: Final = "SELECT to_regclass(%s) IS NOT NULL"


class _Statements:
    """The SQL of one records table, rendered once; shared by the sync and async stores."""

    __slots__ = (
        "claim_or_read",
        "create_schema",
        "create_table",
        "delete",
        "delete_version",
        "drop_table",
        "extend",
        "finish",
        "purge",
        "record_version",
        "select",
        "select_bytes",
        "select_version",
    )

    def __init__(self, table_name: str) -> None:
        table = sql.Identifier(table_name)
        columns = sql.SQL("key, status, payload_hash, token, expires_at, lease_expires_at, result")
        schema = sql.Identifier(_SCHEMA_TABLE)
        self.create_schema = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        ).format(schema)
        self.create_table = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " key TEXT PRIMARY KEY,"
            " status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),"
            " payload_hash TEXT NOT NULL,"
            " token TEXT NOT NULL,"
            " expires_at DOUBLE PRECISION NOT NULL,"
            " lease_expires_at DOUBLE PRECISION NOT NULL,"
            " result TEXT)"
        ).format(table)
        self.record_version = sql.SQL(
            "INSERT INTO {} (name, version) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
        ).format(schema)
        self.select_version = sql.SQL("SELECT version FROM {} WHERE name = %s").format(schema)
        self.delete_version = sql.SQL("DELETE FROM {} WHERE name = %s").format(schema)
        self.drop_table = sql.SQL("DROP TABLE IF EXISTS {}").format(table)
        # One statement: read the key's row, and insert or take over a claimable one (the row
        # lock serialises claimers). Read-only when the key is held: the insert gets a row to
        # insert only when there is no row or it is claimable. The first column says whether
        # this call claimed; no row at all means the insert lost a race with a row the
        # statement's snapshot could not see, and a fresh SELECT must read it.
        claimable = "{r}.expires_at <= %(now)s OR {r}.status = 'failed' OR ({r}.status ="
        claimable += " 'in_progress' AND {r}.lease_expires_at <= %(now)s)"
        self.claim_or_read = _render(
            sql.SQL(
                "WITH held AS (SELECT {columns} FROM {t} WHERE key = %(key)s),"
                " claimed AS (INSERT INTO {t} AS r ({columns})"
                " SELECT %(key)s, 'in_progress', %(hash)s, %(token)s, %(expires)s, %(lease)s,"
                " NULL::text WHERE NOT EXISTS (SELECT 1 FROM held WHERE NOT ("
                + claimable.format(r="held")
                + "))"
                " ON CONFLICT (key) DO UPDATE SET"
                " status = EXCLUDED.status, payload_hash = EXCLUDED.payload_hash,"
                " token = EXCLUDED.token, expires_at = EXCLUDED.expires_at,"
                " lease_expires_at = EXCLUDED.lease_expires_at, result = NULL"
                " WHERE " + claimable.format(r="r") + " RETURNING {columns})"
                " SELECT true, {columns} FROM claimed"
                " UNION ALL SELECT false, {columns} FROM held"
                " WHERE NOT EXISTS (SELECT 1 FROM claimed) AND NOT ("
                + claimable.format(r="held")
                + ")"
            ).format(t=table, columns=columns)
        )
        self.select = sql.SQL("SELECT {} FROM {} WHERE key = %s").format(columns, table)
        self.select_bytes = _render(self.select)
        self.finish = _render(
            sql.SQL(
                "UPDATE {} SET status = %s, expires_at = %s, lease_expires_at = %s, result = %s"
                " WHERE key = %s AND token = %s AND status = 'in_progress'"
            ).format(table)
        )
        self.extend = _render(
            sql.SQL(
                "UPDATE {} SET lease_expires_at = %s, expires_at = GREATEST(expires_at, %s)"
                " WHERE key = %s AND token = %s AND status = 'in_progress'"
            ).format(table)
        )
        # SKIP LOCKED: a purge never waits for (or blocks) a claimer holding a row.
        self.purge = sql.SQL(
            "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= %s"
            " LIMIT %s FOR UPDATE SKIP LOCKED)"
        ).format(t=table)
        self.delete = _render(
            sql.SQL(
                "DELETE FROM {} WHERE key = %s AND token = %s AND status = 'in_progress'"
            ).format(table)
        )


class PostgresStore:
    """Idempotency records in a PostgreSQL table. See the module docstring for the URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._config = parse_url(url)
        self._pool: ConnectionPool[psycopg.Connection[_Row]] | None = None
        self._pool_lock = threading.Lock()
        self._sql = _Statements(self._config.table)
        # Used by the queue store (events/queue_postgres.py) under these names.
        self._create_schema = self._sql.create_schema
        self._record_version = self._sql.record_version

    @property
    def table(self) -> str:
        """The records table."""
        return self._config.table

    # -- connections ---------------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[_Row]]:
        pool = self._pool
        if pool is not None:
            return pool
        with self._pool_lock:
            if self._pool is None:
                pool = ConnectionPool(self._config.conninfo, **_pool_options(self._config))
                pool.open()
                self._pool = pool
            return self._pool

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[_Row]]:
        """A cursor in one transaction, committed when the block exits normally."""
        with self._get_pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextmanager
    def _statement(self) -> Iterator[psycopg.Cursor[_Row]]:
        """A cursor whose every statement commits on its own (one round trip, no BEGIN)."""
        with self._get_pool().connection() as conn, conn.cursor() as cur:
            yield cur

    # -- protocol --------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the tables if missing and record ``SCHEMA_VERSION``; safe to run concurrently."""
        with self._transaction() as cur:
            cur.execute(_LOCK_SCHEMA, (_SCHEMA_LOCK,))
            cur.execute(self._sql.create_schema)
            cur.execute(self._sql.create_table)
            cur.execute(self._sql.record_version, (self._config.table, SCHEMA_VERSION))

    def schema_version(self) -> int | None:
        """The version recorded by :meth:`init` for this table, or ``None`` before it."""
        with self._transaction() as cur:
            cur.execute(_SCHEMA_EXISTS, (_SCHEMA_TABLE,))
            exists = cur.fetchone()
            if exists is None or not exists[0]:
                return None
            cur.execute(self._sql.select_version, (self._config.table,))
            row = cur.fetchone()
            return None if row is None else int(row[0])

    def claim(
        self,
        key: str,
        payload_hash: str,
        token: str,
        now: float,
        *,
        lease: float,
        ttl: float,
    ) -> Claim:
        """Take ``key`` if it is free, expired, failed or its lease ran out (one statement)."""
        params = _claim_params(key, payload_hash, token, now, lease, ttl)
        for _ in range(_CLAIM_ATTEMPTS):
            with self._statement() as cur:
                cur.execute(self._sql.claim_or_read, params, prepare=True)
                row = cur.fetchone()
                if row is not None:
                    return _claim_answer(row, key, payload_hash, token, params)
                # The insert lost to a row this statement could not see: read it. It may be
                # released in between, in which case the loop claims again.
                cur.execute(self._sql.select_bytes, (params["key"],), prepare=True)
                row = cur.fetchone()
                if row is not None:
                    return Claim(False, _record(row))
        raise _claim_gave_up(key)

    def _finish_claim(
        self, status: RecordStatus, key: str, token: str, result: str, now: float, ttl: float
    ) -> bool:
        with self._statement() as cur:
            cur.execute(
                self._sql.finish, _finish_params(status, key, token, result, now, ttl), prepare=True
            )
            return cur.rowcount == 1

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim (one conditional update)."""
        with self._statement() as cur:
            cur.execute(self._sql.extend, _extend_params(key, token, now, lease), prepare=True)
            return cur.rowcount == 1

    def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        return self._finish_claim(RecordStatus.COMPLETED, key, token, result, now, ttl)

    def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return self._finish_claim(RecordStatus.FAILED, key, token, error, now, ttl)

    def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds the claim."""
        with self._statement() as cur:
            cur.execute(self._sql.delete, (_encode(key), _encode(token)), prepare=True)
            return cur.rowcount == 1

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not."""
        with self._statement() as cur:
            cur.execute(self._sql.select_bytes, (_encode(key),), prepare=True)
            row = cur.fetchone()
            return None if row is None else _record(row)

    def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` records expired at ``now``."""
        int_at_least("limit", limit, 1)
        with self._statement() as cur:
            cur.execute(self._sql.purge, (float(now), limit))
            return cur.rowcount

    def close(self) -> None:
        """Close the pool; a later call opens a new one."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def drop(self) -> None:
        """Drop the records table and its version row (tests and tear-down only)."""
        with self._transaction() as cur:
            cur.execute(_LOCK_SCHEMA, (_SCHEMA_LOCK,))
            cur.execute(self._sql.drop_table)
            cur.execute(_SCHEMA_EXISTS, (_SCHEMA_TABLE,))
            exists = cur.fetchone()
            if exists is not None and exists[0]:
                cur.execute(self._sql.delete_version, (self._config.table,))
