"""The embedded SQLite store: durable, shared by the processes of one machine, stdlib only.

URL::

    sqlite:///relative/path.db                   # relative to the working directory at open time
    sqlite:////var/lib/app/stormproof.db         # absolute: the path is "/var/lib/app/..."
    sqlite:///app.db?table=orders_idem&synchronous=FULL&busy_timeout_ms=10000
    sqlite:///app.db?wal_autocheckpoint=1000                 # SQLite's own default

**How the path parses.** Everything after ``sqlite://`` is an empty host followed by ``/`` and the
file path, taken verbatim after that third slash: ``sqlite:///data/x.db`` is the *relative* path
``data/x.db`` and ``sqlite:////data/x.db`` the absolute path ``/data/x.db`` (the SQLAlchemy
convention). The path is percent-decoded, so write ``%3F``, ``%23`` and ``%25`` for ``?``, ``#``
and ``%``. A relative path is made absolute when the store is constructed, so a later ``chdir``
does not move the database. ``:memory:`` is refused (every thread would get its own empty
database); use ``memory://``.

Query parameters (anything else is a :class:`~stormproof.errors.ConfigError` naming it):

* ``table`` -- the records table, default ``stormproof_idempotency``; an SQL identifier
  (letters, digits, ``_``, not starting with a digit, at most 63 characters).
* ``synchronous`` -- ``NORMAL`` (default) or ``FULL``, case-insensitive.
* ``busy_timeout_ms`` -- how long a writer waits for another writer's lock, default 5000.
* ``wal_autocheckpoint`` -- checkpoint the WAL into the database file once it holds this many
  pages (4 KiB each), default 10000 (about 40 MiB; SQLite's own default is 1000). See below.

**Durability.** The database runs in WAL mode. With ``synchronous=NORMAL`` a transaction is
written to the WAL (in the OS page cache) before ``claim``/``complete``/``release``/``fail``
return, so an acknowledged write survives a crash of the application -- including ``kill -9``
-- but the WAL is fsynced only at checkpoints, so the most recent transactions may be lost
(never corrupted) on power loss or an operating-system crash. ``synchronous=FULL`` fsyncs the
WAL on every commit: an acknowledged write survives power loss too, at a throughput cost
(one fsync per write).

**Checkpoints.** With ``synchronous=NORMAL`` the only fsyncs are at checkpoints (two each: the
WAL, then the database file), and a checkpoint runs inside whichever commit pushed the WAL past
``wal_autocheckpoint`` pages. An idempotent call writes about three pages, so at SQLite's default
of 1,000 pages every few hundred calls paid for two fsyncs, which took 30-40 % of the time on the
benchmark machine; at 10,000 the same fsyncs are spread over ten times as many calls, and pages
rewritten many times in between are copied once. The cost: the WAL file grows to about 40 MiB
before it is reused (it is not truncated; set the limit lower to keep it smaller), and after a
power loss up to that much of the most recent writes may be missing instead of up to 4 MiB --
the same kind of loss ``NORMAL`` already allows, over a longer stretch. With ``synchronous=FULL``
every commit is fsynced anyway and the setting only affects the WAL's size.

**Concurrency.** Each thread gets its own connection (``sqlite3`` connections must not be used
by two threads at once); any number of processes may open the same file. Every write is one
statement in autocommit mode, which SQLite runs as its own transaction under the database's
single write lock (waiting up to ``busy_timeout_ms``): ``claim`` is a single upsert whose
condition is the claimable rule, so it is atomic across threads and processes, and each write
returns only after its commit. ``init`` uses an explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``.
Do not put the file on a network file system (WAL needs shared memory between the processes),
and do not carry a store across ``fork`` while using it: a forked child opens fresh connections.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from stormproof._validate import int_at_least
from stormproof.errors import ConfigError
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_TABLE",
    "DEFAULT_WAL_AUTOCHECKPOINT",
    "SQLiteStore",
    "SQLiteURL",
    "parse_url",
]

DEFAULT_TABLE = "stormproof_idempotency"
DEFAULT_BUSY_TIMEOUT_MS = 5000
#: The table where ``init`` records the schema version, one row per records table.
SCHEMA_TABLE = "stormproof_schema"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SYNCHRONOUS = ("NORMAL", "FULL")
_PARAMETERS = ("table", "synchronous", "busy_timeout_ms", "wal_autocheckpoint")
#: Pages in the WAL before a commit checkpoints it (see *Checkpoints* in the module docstring).
DEFAULT_WAL_AUTOCHECKPOINT = 10_000
_COLUMNS = "key, status, payload_hash, token, expires_at, lease_expires_at, result"
# The statuses as plain strings: the enum's .value lookup is a measurable share of a call.
_IN_PROGRESS = RecordStatus.IN_PROGRESS.value
_COMPLETED = RecordStatus.COMPLETED.value
_FAILED = RecordStatus.FAILED.value


@dataclass(frozen=True, slots=True)
class SQLiteURL:
    """The parts of a ``sqlite:///`` URL."""

    path: str
    table: str = DEFAULT_TABLE
    synchronous: str = "NORMAL"
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    wal_autocheckpoint: int = DEFAULT_WAL_AUTOCHECKPOINT


def parse_url(url: str) -> SQLiteURL:
    """Split a ``sqlite:///path?table=...`` URL; a bad part raises ConfigError naming it."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigError("url", "must start with sqlite:///", url)
    if parts.netloc:
        raise ConfigError(
            "url", "a sqlite URL has no host: use sqlite:///relative.db or sqlite:////abs.db", url
        )
    if not parts.path.startswith("/"):
        raise ConfigError("url", "must be sqlite:/// followed by the file path", url)
    if parts.fragment:
        raise ConfigError("url", "must not have a #fragment (write %23 for '#' in a path)", url)
    path = unquote(parts.path[1:])
    if not path or path.endswith("/"):
        raise ConfigError("path", "must name a database file", path)
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigError("path", "must be a file path; use memory:// for an in-memory store", path)
    if "\x00" in path:
        raise ConfigError("path", "must not contain NUL", path)

    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as error:
        raise ConfigError("url", f"malformed query string ({error})", parts.query) from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name not in _PARAMETERS:
            raise ConfigError(name, f"unknown parameter; use one of {', '.join(_PARAMETERS)}")
        if name in params:
            raise ConfigError(name, "given more than once", value)
        params[name] = value

    table = params.get("table", DEFAULT_TABLE)
    if not _IDENTIFIER.fullmatch(table):
        raise ConfigError(
            "table",
            "must be an identifier: letters, digits and _, not starting with a digit, "
            "at most 63 characters",
            table,
        )
    if table.lower() == SCHEMA_TABLE or table.lower().startswith("sqlite_"):
        raise ConfigError("table", "is a reserved name", table)
    synchronous = params.get("synchronous", "NORMAL").upper()
    if synchronous not in _SYNCHRONOUS:
        raise ConfigError("synchronous", "must be NORMAL or FULL", params["synchronous"])
    raw_timeout = params.get("busy_timeout_ms", str(DEFAULT_BUSY_TIMEOUT_MS))
    if not raw_timeout.isascii() or not raw_timeout.isdigit():
        raise ConfigError(
            "busy_timeout_ms", "must be a whole number of milliseconds >= 0", raw_timeout
        )
    busy_timeout_ms = int(raw_timeout)
    if busy_timeout_ms > 2**31 - 1:
        raise ConfigError("busy_timeout_ms", f"must be <= {2**31 - 1}", busy_timeout_ms)
    raw_pages = params.get("wal_autocheckpoint", str(DEFAULT_WAL_AUTOCHECKPOINT))
    if not raw_pages.isascii() or not raw_pages.isdigit() or int(raw_pages) < 1:
        raise ConfigError("wal_autocheckpoint", "must be a whole number of pages >= 1", raw_pages)
    wal_autocheckpoint = int(raw_pages)
    if wal_autocheckpoint > 2**31 - 1:
        raise ConfigError("wal_autocheckpoint", f"must be <= {2**31 - 1}", wal_autocheckpoint)
    return SQLiteURL(os.path.abspath(path), table, synchronous, busy_timeout_ms, wal_autocheckpoint)


def _record(row: tuple[str, str, str, str, float, float, str | None]) -> IdempotencyRecord:
    key, status, payload_hash, token, expires_at, lease_expires_at, result = row
    return IdempotencyRecord(
        key,
        RecordStatus(status),
        payload_hash,
        token,
        float(expires_at),
        float(lease_expires_at),
        result,
    )


class SQLiteStore:
    """Idempotency records in one table of an SQLite file; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.config = parse_url(url)
        table = self.config.table
        self._table = f'"{table}"'  # validated identifier, quoted anyway
        self._select = f"SELECT {_COLUMNS} FROM {self._table} WHERE key = ?"
        self._claim_sql = (
            f"INSERT INTO {self._table} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT (key) DO UPDATE SET status = excluded.status,"
            " payload_hash = excluded.payload_hash, token = excluded.token,"
            " expires_at = excluded.expires_at, lease_expires_at = excluded.lease_expires_at,"
            f" result = NULL WHERE {self._table}.expires_at <= ?"
            f" OR {self._table}.status = 'failed'"
            f" OR ({self._table}.status = 'in_progress' AND {self._table}.lease_expires_at <= ?)"
            " RETURNING token"
        )
        self._finish_sql = (
            f"UPDATE {self._table} SET status = ?, expires_at = ?, lease_expires_at = ?,"
            " result = ? WHERE key = ? AND token = ? AND status = 'in_progress'"
        )
        self._extend_sql = (
            f"UPDATE {self._table} SET lease_expires_at = ?, expires_at = max(expires_at, ?)"
            " WHERE key = ? AND token = ? AND status = 'in_progress'"
        )
        self._release_sql = (
            f"DELETE FROM {self._table} WHERE key = ? AND token = ? AND status = 'in_progress'"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every connection opened in this process, with its thread: close() closes them all, and
        # the connections of threads that have ended are closed whenever a new one is opened.
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._generation = 0  # bumped by close() and after a fork: threads then reconnect
        self._pid = os.getpid()

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        config = self.config
        # isolation_level=None: the sqlite3 module issues no implicit BEGIN; every write below is
        # an explicit BEGIN IMMEDIATE ... COMMIT. check_same_thread=False only so that close()
        # may close other threads' connections; each one is used by its own thread alone.
        conn = sqlite3.connect(
            config.path,
            timeout=config.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            # The busy timeout first: switching to WAL needs a lock another process may hold.
            conn.execute(f"PRAGMA busy_timeout = {config.busy_timeout_ms}")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise ConfigError("path", f"SQLite cannot use WAL mode on this file (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {config.synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {config.wal_autocheckpoint}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _forget_if_forked(self) -> None:
        """In a forked child, abandon (never close) the parent's connections. Holds the lock."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid, self._connections = pid, []
            self._generation += 1

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.key == (os.getpid(), self._generation):
            return conn
        conn = self._connect()
        with self._lock:
            self._forget_if_forked()
            alive = []
            for thread, other in self._connections:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()
            alive.append((threading.current_thread(), conn))
            self._connections = alive
            local.conn, local.key = conn, (self._pid, self._generation)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: the write lock up front, committed before the caller returns."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- the protocol --------------------------------------------------------------------------

    def init(self) -> None:
        """Create the records and schema tables if missing and record ``SCHEMA_VERSION``."""
        with self._write() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} ("
                " key TEXT PRIMARY KEY NOT NULL,"
                " status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),"
                " payload_hash TEXT NOT NULL,"
                " token TEXT NOT NULL,"
                " expires_at REAL NOT NULL,"
                " lease_expires_at REAL NOT NULL,"
                " result TEXT)"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ("
                " name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
            )
            conn.execute(
                f"INSERT OR IGNORE INTO {SCHEMA_TABLE} (name, version) VALUES (?, ?)",
                (self.config.table, SCHEMA_VERSION),
            )

    def schema_version(self) -> int | None:
        """The version ``init`` recorded for this table, or ``None``."""
        conn = self._conn()
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
        ).fetchone()
        if exists is None:
            return None
        row = conn.execute(
            f"SELECT version FROM {SCHEMA_TABLE} WHERE name = ?", (self.config.table,)
        ).fetchone()
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
        """Take ``key`` if it is free, expired, failed or its lease ran out.

        One upsert statement, atomic on its own (autocommit): it inserts, or overwrites a row
        that :meth:`IdempotencyRecord.is_claimable` would accept -- the same rule, written in
        SQL -- and returns the token now in the row. A read follows only when the key is held.
        """
        expires_at, lease_expires_at = now + ttl, now + lease
        params = (key, _IN_PROGRESS, payload_hash, token, expires_at, lease_expires_at, now, now)
        conn = self._conn()
        while True:
            row = conn.execute(self._claim_sql, params).fetchone()
            if row is not None and row[0] == token:
                record = IdempotencyRecord(
                    key, RecordStatus.IN_PROGRESS, payload_hash, token, expires_at, lease_expires_at
                )
                return Claim(True, record)
            held = conn.execute(self._select, (key,)).fetchone()
            if held is not None:
                return Claim(False, _record(held))
            # The holder released the key between the two statements: try again.

    def _finish(self, key: str, token: str, status: str, text: str, now: float, ttl: float) -> bool:
        # A single conditional statement is its own transaction (autocommit), committed before
        # execute returns.
        cursor = self._conn().execute(self._finish_sql, (status, now + ttl, now, text, key, token))
        return cursor.rowcount == 1

    def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        return self._finish(key, token, _COMPLETED, result, now, ttl)

    def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return self._finish(key, token, _FAILED, error, now, ttl)

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim (one conditional update)."""
        until = now + lease
        cursor = self._conn().execute(self._extend_sql, (until, until, key, token))
        return cursor.rowcount == 1

    def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds the claim."""
        cursor = self._conn().execute(self._release_sql, (key, token))
        return cursor.rowcount == 1

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not (one consistent read)."""
        row = self._conn().execute(self._select, (key,)).fetchone()
        return None if row is None else _record(row)

    def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` records expired at ``now`` in one short write transaction."""
        int_at_least("limit", limit, 1)
        cursor = self._conn().execute(
            f"DELETE FROM {self._table} WHERE rowid IN"
            f" (SELECT rowid FROM {self._table} WHERE expires_at <= ? LIMIT ?)",
            (float(now), limit),
        )
        return cursor.rowcount

    def close(self) -> None:
        """Close every connection this store opened in this process; a later call reconnects."""
        with self._lock:
            self._forget_if_forked()
            connections, self._connections = self._connections, []
            self._generation += 1
            for _thread, conn in connections:
                conn.close()

    def drop(self) -> None:
        """Drop the records table and its schema row (for tests)."""
        with self._write() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self._table}")
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
            ).fetchone()
            if exists is not None:
                conn.execute(f"DELETE FROM {SCHEMA_TABLE} WHERE name = ?", (self.config.table,))
