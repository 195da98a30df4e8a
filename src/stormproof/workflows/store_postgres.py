"""The workflow store in PostgreSQL (psycopg 3, pooled), for several machines sharing workers.

The URL and pool are those of :class:`stormproof.stores.postgres.PostgresStore`, which this back
end reuses (``pool_min``, ``pool_max``, ``pool_timeout``; autocommit connections). ``table`` is
the prefix of the four tables (default ``stormproof_wf``). Every commit is one transaction
(``conn.transaction()``); the ownership check is the ``UPDATE ... WHERE owner = %s`` that opens
it, whose row lock also serialises history sequence numbers. Durability is PostgreSQL's:
a commit acknowledged with the default ``synchronous_commit = on`` survives a server crash.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import Cursor, sql

from stormproof.stores.postgres import PostgresStore
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
from stormproof.workflows.store_sqlite import check_prefix

__all__ = ["PostgresWorkflowStore"]

_SCHEMA_TABLE = "stormproof_schema"
#: Serialises concurrent ``init``/``drop`` calls (the key of the idempotency stores' lock + 1).
_SCHEMA_LOCK = int.from_bytes(b"stormprf", "big", signed=True) + 1
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


class PostgresWorkflowStore:
    """Executions, history, steps and timers in PostgreSQL; see :mod:`.store`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store = PostgresStore(with_default_prefix(url))
        prefix = self._store.table
        check_prefix(prefix)
        self.prefix = prefix
        self._e = f'"{prefix}_executions"'
        self._h = f'"{prefix}_history"'
        self._s = f'"{prefix}_steps"'
        self._t = f'"{prefix}_timers"'
        self._select = (
            f"SELECT {_EXEC_COLUMNS} FROM {self._e} e LEFT JOIN {self._t} t ON t.execution = e.name"
        )
        self._insert_event = (
            f"INSERT INTO {self._h} (execution, seq, type, timestamp, details)"
            " VALUES (%s, %s, %s, %s, %s)"
        )
        self._upsert_step = (
            f"INSERT INTO {self._s} (execution, step_id, name, status, result, attempt, state)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (execution, step_id) DO UPDATE SET"
            " name = EXCLUDED.name, status = EXCLUDED.status, result = EXCLUDED.result,"
            " attempt = EXCLUDED.attempt, state = EXCLUDED.state"
        )
        self._set_timer = (
            f"INSERT INTO {self._t} (execution, due_at) VALUES (%s, %s)"
            " ON CONFLICT (execution) DO UPDATE SET due_at = EXCLUDED.due_at"
        )

    def _sql(self, text: str) -> sql.SQL:
        # Table names are validated identifiers quoted above; everything else is a parameter.
        return sql.SQL(text)  # type: ignore[arg-type,unused-ignore]

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the tables if missing and record the schema version (safe concurrently)."""
        with self._store._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cur.execute(
                self._sql(
                    f"CREATE TABLE IF NOT EXISTS {self._e} ("
                    " name TEXT PRIMARY KEY, kind TEXT NOT NULL, definition TEXT NOT NULL,"
                    " input TEXT NOT NULL, status TEXT NOT NULL, output TEXT, error TEXT,"
                    " cause TEXT, checkpoint TEXT NOT NULL, version BIGINT NOT NULL DEFAULT 0,"
                    " owner TEXT, lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,"
                    " runs INTEGER NOT NULL DEFAULT 0, next_seq BIGINT NOT NULL DEFAULT 1,"
                    " started_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
                    " parent TEXT)"
                )
            )
            cur.execute(
                self._sql(
                    f'CREATE INDEX IF NOT EXISTS "{self.prefix}_exec_status"'
                    f" ON {self._e} (status, started_at)"
                )
            )
            cur.execute(
                self._sql(
                    f'CREATE INDEX IF NOT EXISTS "{self.prefix}_exec_parent" ON {self._e} (parent)'
                )
            )
            cur.execute(
                self._sql(
                    f"CREATE TABLE IF NOT EXISTS {self._h} ("
                    " execution TEXT NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL,"
                    " timestamp DOUBLE PRECISION NOT NULL, details TEXT NOT NULL,"
                    " PRIMARY KEY (execution, seq))"
                )
            )
            cur.execute(
                self._sql(
                    f"CREATE TABLE IF NOT EXISTS {self._s} ("
                    " execution TEXT NOT NULL, step_id INTEGER NOT NULL, name TEXT NOT NULL,"
                    " status TEXT NOT NULL, result TEXT, attempt INTEGER NOT NULL,"
                    " state TEXT NOT NULL, PRIMARY KEY (execution, step_id))"
                )
            )
            cur.execute(
                self._sql(
                    f"CREATE TABLE IF NOT EXISTS {self._t} ("
                    " execution TEXT PRIMARY KEY, due_at DOUBLE PRECISION NOT NULL)"
                )
            )
            cur.execute(
                self._sql(
                    f'CREATE INDEX IF NOT EXISTS "{self.prefix}_timer_due" ON {self._t} (due_at)'
                )
            )
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {_SCHEMA_TABLE}"
                " (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            cur.execute(
                f"INSERT INTO {_SCHEMA_TABLE} (name, version) VALUES (%s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (self.prefix, WORKFLOW_SCHEMA_VERSION),
            )

    def schema_version(self) -> int | None:
        """The version ``init`` recorded for this prefix, or ``None``."""
        return self._store.schema_version()

    # -- executions ------------------------------------------------------------------------------

    def _fetch(self, cur: Cursor[Any], name: str) -> Execution | None:
        cur.execute(self._sql(f"{self._select} WHERE e.name = %s"), (name,))
        row = cur.fetchone()
        return None if row is None else _execution(row)

    def start(self, new: NewExecution, now: float) -> tuple[Execution, bool]:
        """Create the execution (or return the existing one of that name); see the protocol."""
        with self._store._transaction() as cur:
            cur.execute(
                self._sql(
                    f"INSERT INTO {self._e} (name, kind, definition, input, status, checkpoint,"
                    " started_at, updated_at, parent, next_seq)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 2)"
                    " ON CONFLICT (name) DO NOTHING"
                ),
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
            created = cur.rowcount == 1
            if created:
                details: dict[str, Any] = {"input": json.loads(new.input)}
                if new.parent is not None:
                    details["parent"] = new.parent
                cur.execute(
                    self._sql(self._insert_event),
                    (new.name, 1, "ExecutionStarted", now, json.dumps(details)),
                )
                cur.execute(self._sql(self._set_timer), (new.name, now))
            found = self._fetch(cur, new.name)
        assert found is not None
        return found, created

    def get(self, name: str) -> Execution | None:
        """The execution called ``name``, or ``None``."""
        with self._store._statement() as cur:
            return self._fetch(cur, name)

    def claim(self, name: str, owner: str, now: float, lease: float) -> Execution | None:
        """Take a RUNNING execution whose lease is free or expired."""
        with self._store._transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE {self._e} SET owner = %s, lease_until = %s, runs = runs + 1"
                    " WHERE name = %s AND status = 'RUNNING'"
                    " AND (owner IS NULL OR lease_until <= %s)"
                    f" RETURNING {_CLAIMED}"
                ),
                (owner, now + lease, name, now),
            )
            row = cur.fetchone()
        # The timer is not read: a claimed execution is advanced now, whatever its timer says.
        return None if row is None else _execution((*row, None))

    def _apply(self, cur: Cursor[Any], name: str, update: Update, now: float, first: int) -> None:
        if update.events:
            cur.executemany(
                self._sql(self._insert_event),
                [
                    (name, first + i, kind, now, json.dumps(details, separators=(",", ":")))
                    for i, (kind, details) in enumerate(update.events)
                ],
            )
        if update.delete_steps:
            cur.execute(
                self._sql(f"DELETE FROM {self._s} WHERE execution = %s AND step_id = ANY(%s)"),
                (name, list(update.delete_steps)),
            )
        if update.steps:
            cur.executemany(
                self._sql(self._upsert_step),
                [
                    (name, s.step_id, s.name, s.status, s.result, s.attempt, s.state)
                    for s in update.steps
                ],
            )
        if update.wake_at is not None:
            cur.execute(self._sql(self._set_timer), (name, update.wake_at))
        elif update.clear_timer:
            cur.execute(self._sql(f"DELETE FROM {self._t} WHERE execution = %s"), (name,))

    def commit(self, name: str, owner: str, update: Update, now: float, lease_until: float) -> int:
        """Apply ``update`` atomically if ``owner`` holds the lease; see the protocol."""
        events = update.events
        with self._store._transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE {self._e} SET version = version + 1, updated_at = %s,"
                    " next_seq = next_seq + %s, checkpoint = COALESCE(%s, checkpoint),"
                    " status = COALESCE(%s, status), output = COALESCE(%s, output),"
                    " error = COALESCE(%s, error), cause = COALESCE(%s, cause),"
                    " owner = CASE WHEN %s THEN NULL ELSE owner END,"
                    " lease_until = CASE WHEN %s THEN 0 ELSE %s END"
                    " WHERE name = %s AND owner = %s RETURNING next_seq, version"
                ),
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
            )
            row = cur.fetchone()
            if row is None:
                raise OwnershipLost(f"execution {name!r} is no longer owned by {owner!r}")
            self._apply(cur, name, update, now, int(row[0]) - len(events))
        return int(row[1])

    def reopen(self, name: str, update: Update, now: float) -> bool:
        """Set a FAILED execution RUNNING again and due now; see the protocol."""
        events = update.events
        with self._store._transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE {self._e} SET status = 'RUNNING', output = NULL, error = NULL,"
                    " cause = NULL, owner = NULL, lease_until = 0, version = version + 1,"
                    " updated_at = %s, next_seq = next_seq + %s,"
                    " checkpoint = COALESCE(%s, checkpoint)"
                    " WHERE name = %s AND status = 'FAILED' RETURNING next_seq"
                ),
                (now, len(events), update.checkpoint, name),
            )
            row = cur.fetchone()
            if row is None:
                return False
            self._apply(cur, name, update, now, int(row[0]) - len(events))
            wake = now if update.wake_at is None else update.wake_at
            cur.execute(self._sql(self._set_timer), (name, wake))
        return True

    def wake(self, name: str, at: float) -> None:
        """Set the timer of a RUNNING execution to ``at``."""
        with self._store._statement() as cur:
            cur.execute(
                self._sql(
                    f"INSERT INTO {self._t} (execution, due_at)"
                    f" SELECT name, %s FROM {self._e} WHERE name = %s AND status = 'RUNNING'"
                    " ON CONFLICT (execution) DO UPDATE SET due_at = EXCLUDED.due_at"
                ),
                (at, name),
            )

    # -- queries ---------------------------------------------------------------------------------

    def history(self, name: str, after: int = 0) -> list[HistoryEvent]:
        """Events with ``seq > after``, in order."""
        with self._store._statement() as cur:
            cur.execute(
                self._sql(
                    f"SELECT seq, type, timestamp, details FROM {self._h}"
                    " WHERE execution = %s AND seq > %s ORDER BY seq"
                ),
                (name, after),
            )
            rows = cur.fetchall()
        return [HistoryEvent(name, int(s), t, float(ts), json.loads(d)) for s, t, ts, d in rows]

    def steps(self, name: str) -> list[StepRecord]:
        """The recorded steps of a Python-native execution, by ``step_id``."""
        with self._store._statement() as cur:
            cur.execute(
                self._sql(
                    f"SELECT step_id, name, status, result, attempt, state FROM {self._s}"
                    " WHERE execution = %s ORDER BY step_id"
                ),
                (name,),
            )
            rows = cur.fetchall()
        return [StepRecord(int(i), n, st, r, int(a), s) for i, n, st, r, a, s in rows]

    def due(self, now: float, limit: int) -> list[str]:
        """Names of executions whose timer is due and whose lease is free, soonest first."""
        with self._store._statement() as cur:
            cur.execute(
                self._sql(
                    f"SELECT t.execution FROM {self._t} t JOIN {self._e} e"
                    " ON e.name = t.execution WHERE t.due_at <= %s AND e.status = 'RUNNING'"
                    " AND (e.owner IS NULL OR e.lease_until <= %s) ORDER BY t.due_at LIMIT %s"
                ),
                (now, now, limit),
            )
            return [str(r[0]) for r in cur.fetchall()]

    def next_wake(self) -> float | None:
        """The earliest timer of any RUNNING execution, or ``None``."""
        with self._store._statement() as cur:
            cur.execute(
                self._sql(
                    f"SELECT MIN(t.due_at) FROM {self._t} t JOIN {self._e} e"
                    " ON e.name = t.execution WHERE e.status = 'RUNNING'"
                )
            )
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def executions(
        self, status: ExecutionStatus | None = None, *, parent: str | None = None, limit: int = 100
    ) -> list[Execution]:
        """Executions (optionally of one status or one parent), oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("e.status = %s")
            params.append(status.value)
        if parent is not None:
            clauses.append("e.parent = %s")
            params.append(parent)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._store._statement() as cur:
            cur.execute(
                self._sql(f"{self._select}{where} ORDER BY e.started_at, e.name LIMIT %s"),
                (*params, limit),
            )
            return [_execution(r) for r in cur.fetchall()]

    def close(self) -> None:
        """Close the pool."""
        self._store.close()

    def drop(self) -> None:
        """Drop the tables and the version row."""
        with self._store._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for table in (self._e, self._h, self._s, self._t):
                cur.execute(self._sql(f"DROP TABLE IF EXISTS {table}"))
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (_SCHEMA_TABLE,))
            exists = cur.fetchone()
            if exists is not None and exists[0]:
                cur.execute(f"DELETE FROM {_SCHEMA_TABLE} WHERE name = %s", (self.prefix,))
