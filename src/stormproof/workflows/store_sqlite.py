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

import json
import sqlite3
from typing import Any

from stormproof.errors import ConfigError
from stormproof.stores.sqlite import SCHEMA_TABLE, SQLiteStore
from stormproof.workflows.store import (
    WORKFLOW_SCHEMA_VERSION,
    Execution,
    ExecutionStatus,
    HistoryEvent,
    NewExecution,
    OwnershipLost,
    StepRecord,
    Update,
    with_default_prefix,
)

__all__ = ["SQLiteWorkflowStore"]

_EXEC_COLUMNS = (
    "e.name, e.kind, e.definition, e.input, e.status, e.output, e.error, e.cause, e.checkpoint,"
    " e.version, e.owner, e.lease_until, e.runs, e.started_at, e.updated_at, e.parent, t.due_at"
)


_CLAIMED = (
    "name, kind, definition, input, status, output, error, cause, checkpoint, version, owner,"
    " lease_until, runs, started_at, updated_at, parent"
)


def _execution(row: tuple[Any, ...]) -> Execution:
    return Execution(
        name=row[0],
        kind=row[1],
        definition=row[2],
        input=row[3],
        status=ExecutionStatus(row[4]),
        output=row[5],
        error=row[6],
        cause=row[7],
        checkpoint=row[8],
        version=int(row[9]),
        owner=row[10],
        lease_until=float(row[11]),
        runs=int(row[12]),
        started_at=float(row[13]),
        updated_at=float(row[14]),
        parent=row[15],
        wake_at=None if row[16] is None else float(row[16]),
    )


def check_prefix(prefix: str) -> None:
    """Table names are ``<prefix>_executions`` etc.: keep them within 63 characters."""
    if len(prefix) > 50:
        raise ConfigError(
            "table", "the workflow table prefix must be at most 50 characters", prefix
        )


class SQLiteWorkflowStore:
    """Executions, history, steps and timers in an SQLite file; see :mod:`.store`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store = SQLiteStore(with_default_prefix(url))
        prefix = self._store.config.table
        check_prefix(prefix)
        self.prefix = prefix
        self._e = f'"{prefix}_executions"'
        self._h = f'"{prefix}_history"'
        self._s = f'"{prefix}_steps"'
        self._t = f'"{prefix}_timers"'
        self._select = (
            f"SELECT {_EXEC_COLUMNS} FROM {self._e} e LEFT JOIN {self._t} t ON t.execution = e.name"
        )
        self._commit_sql = (
            f"UPDATE {self._e} SET version = version + 1, updated_at = ?,"
            " next_seq = next_seq + ?, checkpoint = COALESCE(?, checkpoint),"
            " status = COALESCE(?, status), output = COALESCE(?, output),"
            " error = COALESCE(?, error), cause = COALESCE(?, cause),"
            " owner = CASE WHEN ? THEN NULL ELSE owner END,"
            " lease_until = CASE WHEN ? THEN 0 ELSE ? END"
            " WHERE name = ? AND owner = ? RETURNING next_seq, version"
        )
        self._insert_event = (
            f"INSERT INTO {self._h} (execution, seq, type, timestamp, details)"
            " VALUES (?, ?, ?, ?, ?)"
        )
        self._upsert_step = (
            f"INSERT OR REPLACE INTO {self._s} (execution, step_id, name, status, result,"
            " attempt, state) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._set_timer = f"INSERT OR REPLACE INTO {self._t} (execution, due_at) VALUES (?, ?)"
        self._clear_timer = f"DELETE FROM {self._t} WHERE execution = ?"

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the tables and indexes if missing and record the schema version."""
        with self._store._write() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._e} ("
                " name TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, definition TEXT NOT NULL,"
                " input TEXT NOT NULL, status TEXT NOT NULL, output TEXT, error TEXT, cause TEXT,"
                " checkpoint TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0, owner TEXT,"
                " lease_until REAL NOT NULL DEFAULT 0, runs INTEGER NOT NULL DEFAULT 0,"
                " next_seq INTEGER NOT NULL DEFAULT 1, started_at REAL NOT NULL,"
                " updated_at REAL NOT NULL, parent TEXT)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{self.prefix}_exec_status"'
                f" ON {self._e} (status, started_at)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{self.prefix}_exec_parent" ON {self._e} (parent)'
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._h} ("
                " execution TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
                " timestamp REAL NOT NULL, details TEXT NOT NULL, PRIMARY KEY (execution, seq))"
                " WITHOUT ROWID"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._s} ("
                " execution TEXT NOT NULL, step_id INTEGER NOT NULL, name TEXT NOT NULL,"
                " status TEXT NOT NULL, result TEXT, attempt INTEGER NOT NULL,"
                " state TEXT NOT NULL, PRIMARY KEY (execution, step_id)) WITHOUT ROWID"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._t} ("
                " execution TEXT PRIMARY KEY NOT NULL, due_at REAL NOT NULL)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{self.prefix}_timer_due" ON {self._t} (due_at)'
            )
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
            cursor = conn.execute(
                f"INSERT INTO {self._e} (name, kind, definition, input, status, checkpoint,"
                " started_at, updated_at, parent, next_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 2)"
                " ON CONFLICT (name) DO NOTHING",
                (
                    new.name,
                    new.kind,
                    new.definition,
                    new.input,
                    ExecutionStatus.RUNNING.value,
                    new.checkpoint,
                    now,
                    now,
                    new.parent,
                ),
            )
            created = cursor.rowcount == 1
            if created:
                details = {"input": json.loads(new.input)}
                if new.parent is not None:
                    details["parent"] = new.parent
                conn.execute(
                    self._insert_event,
                    (new.name, 1, "ExecutionStarted", now, json.dumps(details)),
                )
                conn.execute(self._set_timer, (new.name, now))
            else:
                row = conn.execute(f"{self._select} WHERE e.name = ?", (new.name,)).fetchone()
        if not created:
            return _execution(row), False
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

    def get(self, name: str) -> Execution | None:
        """The execution called ``name``, or ``None``."""
        row = self._store._conn().execute(f"{self._select} WHERE e.name = ?", (name,)).fetchone()
        return None if row is None else _execution(row)

    def claim(self, name: str, owner: str, now: float, lease: float) -> Execution | None:
        """Take a RUNNING execution whose lease is free or expired (one statement)."""
        # One statement, atomic on its own (autocommit); fetchall() runs it to completion so
        # that its implicit transaction commits before this returns.
        rows = (
            self._store._conn()
            .execute(
                f"UPDATE {self._e} SET owner = ?, lease_until = ?, runs = runs + 1"
                " WHERE name = ? AND status = 'RUNNING' AND (owner IS NULL OR lease_until <= ?)"
                f" RETURNING {_CLAIMED}",
                (owner, now + lease, name, now),
            )
            .fetchall()
        )
        row = rows[0] if rows else None
        # The timer is not read: a claimed execution is advanced now, whatever its timer says.
        return None if row is None else _execution((*row, None))

    def commit(self, name: str, owner: str, update: Update, now: float, lease_until: float) -> int:
        """Apply ``update`` atomically if ``owner`` holds the lease; see the protocol."""
        events = update.events
        with self._store._write() as conn:
            row = conn.execute(
                self._commit_sql,
                (
                    now,
                    len(events),
                    update.checkpoint,
                    None if update.status is None else update.status.value,
                    update.output,
                    update.error,
                    update.cause,
                    update.release,
                    update.release,
                    lease_until,
                    name,
                    owner,
                ),
            ).fetchone()
            if row is None:
                raise OwnershipLost(f"execution {name!r} is no longer owned by {owner!r}")
            self._apply(conn, name, update, now, int(row[0]) - len(events))
        return int(row[1])

    def _apply(
        self, conn: sqlite3.Connection, name: str, update: Update, now: float, first_seq: int
    ) -> None:
        if update.events:
            conn.executemany(
                self._insert_event,
                [
                    (name, first_seq + i, kind, now, json.dumps(details, separators=(",", ":")))
                    for i, (kind, details) in enumerate(update.events)
                ],
            )
        if update.delete_steps:
            conn.executemany(
                f"DELETE FROM {self._s} WHERE execution = ? AND step_id = ?",
                [(name, step_id) for step_id in update.delete_steps],
            )
        if update.steps:
            conn.executemany(
                self._upsert_step,
                [
                    (name, s.step_id, s.name, s.status, s.result, s.attempt, s.state)
                    for s in update.steps
                ],
            )
        if update.wake_at is not None:
            conn.execute(self._set_timer, (name, update.wake_at))
        elif update.clear_timer:
            conn.execute(self._clear_timer, (name,))

    def reopen(self, name: str, update: Update, now: float) -> bool:
        """Set a FAILED execution RUNNING again and due now; see the protocol."""
        events = update.events
        with self._store._write() as conn:
            row = conn.execute(
                f"UPDATE {self._e} SET status = 'RUNNING', output = NULL, error = NULL,"
                " cause = NULL, owner = NULL, lease_until = 0, version = version + 1,"
                " updated_at = ?, next_seq = next_seq + ?, checkpoint = COALESCE(?, checkpoint)"
                " WHERE name = ? AND status = 'FAILED' RETURNING next_seq",
                (now, len(events), update.checkpoint, name),
            ).fetchone()
            if row is None:
                return False
            self._apply(conn, name, update, now, int(row[0]) - len(events))
            conn.execute(self._set_timer, (name, now if update.wake_at is None else update.wake_at))
        return True

    def wake(self, name: str, at: float) -> None:
        """Set the timer of a RUNNING execution to ``at``."""
        with self._store._write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO {self._t} (execution, due_at)"
                f" SELECT name, ? FROM {self._e} WHERE name = ? AND status = 'RUNNING'",
                (at, name),
            )

    # -- queries ---------------------------------------------------------------------------------

    def history(self, name: str, after: int = 0) -> list[HistoryEvent]:
        """Events with ``seq > after``, in order."""
        rows = (
            self._store._conn()
            .execute(
                f"SELECT seq, type, timestamp, details FROM {self._h}"
                " WHERE execution = ? AND seq > ? ORDER BY seq",
                (name, after),
            )
            .fetchall()
        )
        return [HistoryEvent(name, int(s), t, float(ts), json.loads(d)) for s, t, ts, d in rows]

    def steps(self, name: str) -> list[StepRecord]:
        """The recorded steps of a Python-native execution, by ``step_id``."""
        rows = (
            self._store._conn()
            .execute(
                f"SELECT step_id, name, status, result, attempt, state FROM {self._s}"
                " WHERE execution = ? ORDER BY step_id",
                (name,),
            )
            .fetchall()
        )
        return [StepRecord(int(i), n, st, r, int(a), s) for i, n, st, r, a, s in rows]

    def due(self, now: float, limit: int) -> list[str]:
        """Names of executions whose timer is due and whose lease is free, soonest first."""
        rows = (
            self._store._conn()
            .execute(
                f"SELECT t.execution FROM {self._t} t JOIN {self._e} e ON e.name = t.execution"
                " WHERE t.due_at <= ? AND e.status = 'RUNNING'"
                " AND (e.owner IS NULL OR e.lease_until <= ?) ORDER BY t.due_at LIMIT ?",
                (now, now, limit),
            )
            .fetchall()
        )
        return [str(r[0]) for r in rows]

    def next_wake(self) -> float | None:
        """The earliest timer of any RUNNING execution, or ``None``."""
        row = (
            self._store._conn()
            .execute(
                f"SELECT MIN(t.due_at) FROM {self._t} t JOIN {self._e} e ON e.name = t.execution"
                " WHERE e.status = 'RUNNING'"
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    def executions(
        self, status: ExecutionStatus | None = None, *, parent: str | None = None, limit: int = 100
    ) -> list[Execution]:
        """Executions (optionally of one status or one parent), oldest first."""
        clauses, params = [], []
        if status is not None:
            clauses.append("e.status = ?")
            params.append(status.value)
        if parent is not None:
            clauses.append("e.parent = ?")
            params.append(parent)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = (
            self._store._conn()
            .execute(
                f"{self._select}{where} ORDER BY e.started_at, e.name LIMIT ?", (*params, limit)
            )
            .fetchall()
        )
        return [_execution(r) for r in rows]

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
