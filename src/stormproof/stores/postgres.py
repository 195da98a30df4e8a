"""A PostgreSQL store (psycopg 3 with a ``psycopg_pool`` connection pool).

URL: ``postgresql://user:password@host:port/dbname?table=name&pool_min=1&pool_max=10``.
stormproof's own query parameters are removed; everything else (``sslmode``,
``connect_timeout``, ``application_name``, ...) is passed to libpq unchanged:

* ``table`` -- the records table (default ``stormproof_idempotency``), a plain SQL identifier;
* ``pool_min`` / ``pool_max`` -- connections kept open / opened at most (default 1 and 10);
* ``pool_timeout`` -- seconds to wait for a connection from the pool (default 30);
* ``group_commit`` -- how many claim (and, separately, result) statements may run at once
  before further concurrent calls are combined into the next one (default 2; ``0`` turns
  group commit off). See *Durability and throughput*.

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
per flush latency (an idempotent call is two writes). Concurrent callers in one process share
statements as well as flushes (*group commit*, :mod:`stormproof.stores._group_commit`): while
``group_commit`` claim statements are running, further claims queue, and the next free slot
claims all of them (up to 256) in one ``INSERT ... SELECT FROM unnest(...) ... ON CONFLICT``
statement, one transaction and one flush; results (``complete``/``fail``) are combined the same
way in one ``UPDATE ... FROM unnest(...)``. Each caller still returns only after the commit that
carries its write, and each gets its own answer with the same semantics as a single call. A
caller that finds a free slot runs alone at once, so light load sees no added latency. If a
combined statement fails with a server error (a deadlock, bad data), its items are retried one
by one, so an error is raised only to the caller whose item caused it; a lost connection is
raised to every caller in the batch. Claims of one key may share a statement (the key is sent
once; a burst of duplicates costs one round trip). Processes share flushes through the server's
own group commit. Fewer slots make bigger batches and fewer statements: where the server is
busy (many concurrent callers, or client and server on few cores) ``group_commit=1`` gives the
most calls per second; where callers are few, more slots give the lower latency of parallel
single statements (``docs/benchmarks.md`` has measurements).

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError
from stormproof.stores._calls import ClaimCall as _ClaimRequest
from stormproof.stores._calls import FinishCall as _FinishRequest
from stormproof.stores._calls import call_key as _request_key
from stormproof.stores._group_commit import GroupCommit, Outcome
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus

__all__ = ["DEFAULT_TABLE", "PostgresStore", "PostgresURL", "parse_url"]

#: The records table used when the URL has no ``table`` parameter.
DEFAULT_TABLE: Final = "stormproof_idempotency"
_SCHEMA_TABLE: Final = "stormproof_schema"
_DEFAULT_POOL_MIN: Final = 1
_DEFAULT_POOL_MAX: Final = 10
_DEFAULT_POOL_TIMEOUT: Final = 30.0
_DEFAULT_GROUP_COMMIT: Final = 2
#: The most calls one combined statement carries.
GROUP_COMMIT_MAX_BATCH: Final = 256
#: The key of the advisory lock that serialises ``init`` (and ``drop``) between processes:
#: "stormprf" as a big-endian 64-bit integer.
_SCHEMA_LOCK: Final = int.from_bytes(b"stormprf", "big", signed=True)
_OWN_PARAMS: Final = ("table", "pool_min", "pool_max", "pool_timeout", "group_commit")
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

    __slots__ = ("conninfo", "group_commit", "pool_max", "pool_min", "pool_timeout", "table")

    def __init__(
        self,
        conninfo: str,
        table: str,
        pool_min: int,
        pool_max: int,
        pool_timeout: float,
        group_commit: int = _DEFAULT_GROUP_COMMIT,
    ) -> None:
        self.conninfo = conninfo
        self.table = table
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.pool_timeout = pool_timeout
        self.group_commit = group_commit

    def __repr__(self) -> str:
        return (
            f"PostgresURL(table={self.table!r}, pool_min={self.pool_min}, "
            f"pool_max={self.pool_max}, pool_timeout={self.pool_timeout}, "
            f"group_commit={self.group_commit})"
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
    group_commit = _DEFAULT_GROUP_COMMIT
    if "group_commit" in own:
        group_commit = _int_param("group_commit", own["group_commit"], 0)

    conninfo = urlunsplit(parts._replace(query="&".join(kept)))
    try:
        conninfo_to_dict(conninfo)  # libpq's own parser: unknown parameters, bad ports, ...
    except psycopg.ProgrammingError as error:
        raise ConfigError("url", f"is not a valid libpq URI: {error}", url) from None
    return PostgresURL(conninfo, table, pool_min, pool_max, pool_timeout, group_commit)


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


def _finish_params(request: _FinishRequest) -> tuple[Any, ...]:
    """The parameters of ``finish`` (complete and fail)."""
    status, key, token, result, now, ttl = request
    return (status.value, now + ttl, now, _encode(result), _encode(key), _encode(token))


def _claim_batch_params(requests: Sequence[_ClaimRequest]) -> dict[str, Any]:
    """The parameters of ``claim_batch``: one array per column, each key once.

    A key's first request stands for it; :func:`_claim_batch_answers` answers the repeats.
    """
    firsts: dict[str, _ClaimRequest] = {}
    for request in requests:
        firsts.setdefault(request.key, request)
    return {
        "keys": [_encode(r.key) for r in firsts.values()],
        "hashes": [_encode(r.payload_hash) for r in firsts.values()],
        "tokens": [_encode(r.token) for r in firsts.values()],
        "expires": [r.now + r.ttl for r in firsts.values()],
        "leases": [r.now + r.lease for r in firsts.values()],
        "nows": [r.now for r in firsts.values()],
    }


def _claim_batch_answers(
    requests: Sequence[_ClaimRequest], rows: Sequence[_Row]
) -> list[Claim | None]:
    """Each request's ``Claim`` from the rows of ``claim_batch``.

    ``None`` where the request must be retried alone: it lost a race with a row the statement
    could not see, or it repeats a key whose record it might take over at its own ``now``.
    A repeat that could not take the key over gets the record its key's first request left,
    as it would have, claiming just after it.
    """
    by_key = {row[1]: row for row in rows}
    first_answers: dict[str, Claim | None] = {}
    answers: list[Claim | None] = []
    for request in requests:
        answer: Claim | None
        if request.key in first_answers:
            first = first_answers[request.key]
            if first is None or first.record.is_claimable(request.now):
                # Retried alone, after the batch; so are the key's later repeats, which must
                # see what this one leaves.
                first_answers[request.key] = answer = None
            else:
                answer = Claim(False, first.record)
            answers.append(answer)
            continue
        row = by_key.get(_encode(request.key))
        if row is None:
            answer = None
        elif row[0]:
            record = IdempotencyRecord(
                request.key,
                RecordStatus.IN_PROGRESS,
                request.payload_hash,
                request.token,
                request.now + request.ttl,
                request.now + request.lease,
            )
            answer = Claim(True, record)
        else:
            answer = Claim(False, _record(row[1:]))
        first_answers[request.key] = answer
        answers.append(answer)
    return answers


def _finish_batch_params(requests: Sequence[_FinishRequest]) -> dict[str, Any]:
    """The parameters of ``finish_batch``: one array per column."""
    return {
        "keys": [_encode(r.key) for r in requests],
        "tokens": [_encode(r.token) for r in requests],
        "statuses": [r.status.value for r in requests],
        "expires": [r.now + r.ttl for r in requests],
        "nows": [r.now for r in requests],
        "results": [_encode(r.result) for r in requests],
    }


def _finish_batch_answers(requests: Sequence[_FinishRequest], rows: Sequence[_Row]) -> list[bool]:
    """Whether each request's record was updated, from the keys ``finish_batch`` returned."""
    updated = {row[0] for row in rows}
    return [_encode(request.key) in updated for request in requests]


def _retry_alone(error: psycopg.Error) -> bool:
    """Whether a failed combined statement should be retried call by call.

    A server error about the statement itself (a deadlock between batches, data one item
    carries) is retried per call, so only its own caller sees it. With no SQLSTATE (the
    connection was lost, the pool timed out) or a connection or shutdown class, every call
    would fail the same way, slowly: the error goes to every caller of the batch.
    """
    state = error.sqlstate
    return state is not None and not state.startswith(("08", "57"))


_RequestT = TypeVar("_RequestT")
_AnswerT = TypeVar("_AnswerT")


def _each(
    run_one: Callable[[_RequestT], _AnswerT], requests: Sequence[_RequestT]
) -> list[Outcome[_AnswerT]]:
    """Run each request alone; an exception is that request's outcome."""
    outcomes: list[Outcome[_AnswerT]] = []
    for request in requests:
        try:
            outcomes.append(run_one(request))
        except Exception as error:  # the caller of that request raises it
            outcomes.append(error)
    return outcomes


def _extend_params(key: str, token: str, now: float, lease: float) -> tuple[Any, ...]:
    until = now + lease
    return (until, until, _encode(key), _encode(token))


_COLUMNS: Final = (
    "key",
    "status",
    "payload_hash",
    "token",
    "expires_at",
    "lease_expires_at",
    "result",
)
#: What taking a record over writes: the proposed row, with no result.
_TAKE_OVER: Final = (
    "status = EXCLUDED.status, payload_hash = EXCLUDED.payload_hash, token = EXCLUDED.token,"
    " expires_at = EXCLUDED.expires_at, lease_expires_at = EXCLUDED.lease_expires_at,"
    " result = NULL"
)


def _claimable(row: str, now: str) -> str:
    """SQL: whether the record ``row`` may be claimed at ``now`` (``is_claimable``)."""
    return (
        f"({row}.expires_at <= {now} OR {row}.status = 'failed'"
        f" OR ({row}.status = 'in_progress' AND {row}.lease_expires_at <= {now}))"
    )


#: Statements that do not depend on the table.
_LOCK_SCHEMA: Final = "SELECT pg_advisory_xact_lock(%s)"
_SCHEMA_EXISTS: Final = "SELECT to_regclass(%s) IS NOT NULL"


class _Statements:
    """The SQL of one records table, rendered once; shared by the sync and async stores."""

    __slots__ = (
        "claim_batch",
        "claim_or_read",
        "create_schema",
        "create_table",
        "delete",
        "delete_version",
        "drop_table",
        "extend",
        "finish",
        "finish_batch",
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
        self.claim_or_read = _render(
            sql.SQL(
                "WITH held AS (SELECT {columns} FROM {t} WHERE key = %(key)s),"
                " claimed AS (INSERT INTO {t} AS r ({columns})"
                " SELECT %(key)s, 'in_progress', %(hash)s, %(token)s, %(expires)s, %(lease)s,"
                " NULL::text WHERE NOT EXISTS (SELECT 1 FROM held WHERE NOT "
                + _claimable("held", "%(now)s")
                + ") ON CONFLICT (key) DO UPDATE SET "
                + _TAKE_OVER
                + " WHERE "
                + _claimable("r", "%(now)s")
                + " RETURNING {columns})"
                " SELECT true, {columns} FROM claimed"
                " UNION ALL SELECT false, {columns} FROM held"
                " WHERE NOT EXISTS (SELECT 1 FROM claimed) AND NOT " + _claimable("held", "%(now)s")
            ).format(t=table, columns=columns)
        )
        # The same for many keys (distinct, each with its own ``now``) in one statement, for
        # group commit. Rows are inserted in key order, so that two batches lock shared keys in
        # the same order. A key missing from the answer lost the same race as above.
        self.claim_batch = _render(
            sql.SQL(
                "WITH i AS (SELECT * FROM unnest(%(keys)s::text[], %(hashes)s::text[],"
                " %(tokens)s::text[], %(expires)s::float8[], %(leases)s::float8[],"
                " %(nows)s::float8[]) AS i(key, payload_hash, token, expires_at,"
                " lease_expires_at, now)),"
                " held AS (SELECT {held_columns}, i.now FROM {t} h JOIN i ON i.key = h.key),"
                " claimed AS (INSERT INTO {t} AS r ({columns})"
                " SELECT i.key, 'in_progress', i.payload_hash, i.token, i.expires_at,"
                " i.lease_expires_at, NULL::text FROM i WHERE NOT EXISTS (SELECT 1 FROM held"
                " WHERE held.key = i.key AND NOT "
                + _claimable("held", "held.now")
                + ") ORDER BY i.key ON CONFLICT (key) DO UPDATE SET "
                + _TAKE_OVER
                + " WHERE (SELECT "
                + _claimable("r", "i.now")
                + " FROM i WHERE i.key = EXCLUDED.key) RETURNING key)"
                " SELECT true, key, NULL, NULL, NULL, NULL::float8, NULL::float8, NULL"
                " FROM claimed UNION ALL SELECT false, {columns} FROM held"
                " WHERE NOT EXISTS (SELECT 1 FROM claimed WHERE claimed.key = held.key)"
                " AND NOT " + _claimable("held", "held.now")
            ).format(
                t=table,
                columns=columns,
                held_columns=sql.SQL(", ").join(
                    sql.SQL("h.") + sql.Identifier(name) for name in _COLUMNS
                ),
            )
        )
        self.select = sql.SQL("SELECT {} FROM {} WHERE key = %s").format(columns, table)
        self.select_bytes = _render(self.select)
        self.finish = _render(
            sql.SQL(
                "UPDATE {} SET status = %s, expires_at = %s, lease_expires_at = %s, result = %s"
                " WHERE key = %s AND token = %s AND status = 'in_progress'"
            ).format(table)
        )
        self.finish_batch = _render(
            sql.SQL(
                "UPDATE {} AS r SET status = u.status, expires_at = u.expires_at,"
                " lease_expires_at = u.now, result = u.result FROM unnest(%(keys)s::text[],"
                " %(tokens)s::text[], %(statuses)s::text[], %(expires)s::float8[],"
                " %(nows)s::float8[], %(results)s::text[])"
                " AS u(key, token, status, expires_at, now, result)"
                " WHERE r.key = u.key AND r.token = u.token AND r.status = 'in_progress'"
                " RETURNING r.key"
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
        self._claims: GroupCommit[_ClaimRequest, Claim] | None = None
        self._finishes: GroupCommit[_FinishRequest, bool] | None = None
        if self._config.group_commit:
            limits = {
                "max_inflight": self._config.group_commit,
                "max_batch": GROUP_COMMIT_MAX_BATCH,
            }
            # Claims of one key may share a statement: it sends the key once (see
            # _claim_batch_answers), so that a burst of duplicates costs one statement.
            self._claims = GroupCommit(self._claim_one, self._claim_many, None, **limits)
            self._finishes = GroupCommit(
                self._finish_one, self._finish_many, _request_key, **limits
            )
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
        request = _ClaimRequest(key, payload_hash, token, now, lease, ttl)
        if self._claims is None:
            return self._claim_one(request)
        return self._claims.submit(request)

    def _claim_one(self, request: _ClaimRequest) -> Claim:
        key, payload_hash, token, now, lease, ttl = request
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

    def _claim_many(self, requests: Sequence[_ClaimRequest]) -> list[Outcome[Claim]]:
        try:
            with self._statement() as cur:
                cur.execute(self._sql.claim_batch, _claim_batch_params(requests), prepare=True)
                rows = cur.fetchall()
        except psycopg.Error as error:
            if not _retry_alone(error):
                raise
            return _each(self._claim_one, requests)
        answers = _claim_batch_answers(requests, rows)
        lost = [req for req, answer in zip(requests, answers, strict=True) if answer is None]
        retried = iter(_each(self._claim_one, lost))
        return [next(retried) if answer is None else answer for answer in answers]

    def _finish(self, request: _FinishRequest) -> bool:
        if self._finishes is None:
            return self._finish_one(request)
        return self._finishes.submit(request)

    def _finish_one(self, request: _FinishRequest) -> bool:
        with self._statement() as cur:
            cur.execute(self._sql.finish, _finish_params(request), prepare=True)
            return cur.rowcount == 1

    def _finish_many(self, requests: Sequence[_FinishRequest]) -> list[Outcome[bool]]:
        try:
            with self._statement() as cur:
                cur.execute(self._sql.finish_batch, _finish_batch_params(requests), prepare=True)
                rows = cur.fetchall()
        except psycopg.Error as error:
            if not _retry_alone(error):
                raise
            return _each(self._finish_one, requests)
        return list(_finish_batch_answers(requests, rows))

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim (one conditional update)."""
        with self._statement() as cur:
            cur.execute(self._sql.extend, _extend_params(key, token, now, lease), prepare=True)
            return cur.rowcount == 1

    def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        return self._finish(_FinishRequest(RecordStatus.COMPLETED, key, token, result, now, ttl))

    def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return self._finish(_FinishRequest(RecordStatus.FAILED, key, token, error, now, ttl))

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
