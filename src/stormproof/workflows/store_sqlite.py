"""The workflow store in an SQLite file (stdlib only).

The URL, connections and durability are those of :class:`stormproof.stores.sqlite.SQLiteStore`,
which this back end reuses: WAL mode, one connection per thread, fork-safe, ``busy_timeout_ms``.
The ``table`` parameter is the prefix of the four tables (default ``stormproof_wf``).

**Durability.** Every :meth:`~SQLiteWorkflowStore.commit` is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` transaction. With the default ``synchronous=NORMAL`` a commit is in the WAL (in the
operating system's page cache) before it returns: it survives the engine process being killed
(``kill -9`` included), but the last commits before a power loss or kernel crash may be lost
(never half-applied) because the WAL is fsynced only at checkpoints. ``?synchronous=FULL``
fsyncs every commit, which survives power loss at the cost of one fsync per state transition.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

from stormproof.stores.sqlite import SCHEMA_TABLE, SQLiteStore
from stormproof.workflows._store_sql import Rows, SQLWorkflowStore
from stormproof.workflows.store import (
    WORKFLOW_SCHEMA_VERSION,
    Execution,
    ExecutionStatus,
    NewExecution,
    with_default_prefix,
)

__all__ = ["SQLiteWorkflowStore"]


class SQLiteWorkflowStore(SQLWorkflowStore[sqlite3.Connection]):
    """Executions, history, steps and timers in an SQLite file; see :mod:`.store`."""

    marker: ClassVar[str] = "?"
    types: ClassVar[dict[str, str]] = {
        "pk": "PRIMARY KEY NOT NULL",
        "bigint": "INTEGER",
        "real": "REAL",
        "suffix": " WITHOUT ROWID",
    }

    def __init__(self, url: str) -> None:
        self._store = SQLiteStore(with_default_prefix(url))
        self._prepare(url, self._store.config.table)

    # -- the dialect -----------------------------------------------------------------------------

    def _upsert(
        self, table: str, columns: Sequence[str], keys: Sequence[str], source: str | None = None
    ) -> str:
        if source is None:
            source = f"VALUES ({', '.join('?' for _ in columns)})"
        return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) {source}"

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._store._write()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._store._conn()

    def _claim_scope(self) -> AbstractContextManager[sqlite3.Connection]:
        # One statement, atomic on its own (autocommit).
        return self._read()

    def _wake_scope(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._write()

    def _run(self, c: sqlite3.Connection, text: str, params: Sequence[Any] = ()) -> Rows:
        return c.execute(text, params)

    def _run_many(self, c: sqlite3.Connection, text: str, rows: Sequence[Sequence[Any]]) -> None:
        c.executemany(text, rows)

    def _delete_steps(self, c: sqlite3.Connection, name: str, step_ids: Sequence[int]) -> None:
        c.executemany(
            f"DELETE FROM {self._s} WHERE execution = ? AND step_id = ?",
            [(name, step_id) for step_id in step_ids],
        )

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the tables and indexes if missing and record the schema version."""
        with self._store._write() as conn:
            for statement in self._schema():
                conn.execute(statement)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ("
                " name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
            )
            conn.execute(
                f"INSERT OR IGNORE INTO {SCHEMA_TABLE} (name, version) VALUES (?, ?)",
                (self.prefix, WORKFLOW_SCHEMA_VERSION),
            )

    def schema_version(self) -> int | None:
        """The version ``init`` recorded for this prefix, or ``None``."""
        return self._store.schema_version()

    # -- executions ------------------------------------------------------------------------------

    def start(self, new: NewExecution, now: float) -> tuple[Execution, bool]:
        """Create the execution (or return the existing one of that name); see the protocol."""
        with self._store._write() as conn:
            created = self._insert_new(conn, new, now)
            found = None if created else self._fetch(conn, new.name)
        if not created:
            assert found is not None
            return found, False
        fresh = Execution(
            new.name,
            new.kind,
            new.definition,
            new.input,
            ExecutionStatus.RUNNING,
            None,
            None,
            None,
            new.checkpoint,
            0,
            None,
            0.0,
            0,
            now,
            now,
            new.parent,
            now,
        )
        return fresh, True

    def close(self) -> None:
        """Close this process's connections."""
        self._store.close()

    def drop(self) -> None:
        """Drop the tables and the version row."""
        with self._store._write() as conn:
            for table in (self._e, self._h, self._s, self._t):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
            ).fetchone()
            if exists is not None:
                conn.execute(f"DELETE FROM {SCHEMA_TABLE} WHERE name = ?", (self.prefix,))
