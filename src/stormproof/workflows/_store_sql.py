"""What the SQLite and PostgreSQL workflow stores share.

Both back ends keep the same four tables and run the same statements; only the parameter marker
(``?`` or ``%s``), the column types, the insert-or-replace spelling and the way a statement
reaches the database differ. :class:`SQLWorkflowStore` holds the statements (written once, with
the dialect's marker), the row mapping and every method whose SQL is the same in both; a back end
supplies the hooks that open a transaction or a single statement and run SQL text on it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from stormproof.errors import ConfigError
from stormproof.workflows.store import (
    Execution,
    ExecutionStatus,
    HistoryEvent,
    NewExecution,
    OwnershipLost,
    StepRecord,
    Update,
)

__all__ = ["Rows", "SQLWorkflowStore", "check_prefix", "execution_from_row"]

#: The execution columns and its timer, as ``SELECT`` lists them (``execution_from_row`` order).
_EXEC_COLUMNS = (
    "e.name, e.kind, e.definition, e.input, e.status, e.output, e.error, e.cause, e.checkpoint,"
    " e.version, e.owner, e.lease_until, e.runs, e.started_at, e.updated_at, e.parent, t.due_at"
)
#: The same columns without the timer, as ``claim`` returns them.
_CLAIMED = (
    "name, kind, definition, input, status, output, error, cause, checkpoint, version, owner,"
    " lease_until, runs, started_at, updated_at, parent"
)

C = TypeVar("C")


class Rows(Protocol):
    """The result of one statement, as both drivers' cursors expose it."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        ...

    def fetchone(self) -> Any:
        """The next row, or ``None``."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...


def execution_from_row(row: Sequence[Any]) -> Execution:
    """An :class:`Execution` from a row of ``_EXEC_COLUMNS`` (timer last, possibly ``None``)."""
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


class SQLWorkflowStore(ABC, Generic[C]):
    """The workflow store over SQL; ``C`` is what statements run on (connection or cursor)."""

    #: The dialect's parameter marker.
    marker: ClassVar[str]
    #: The dialect's column types: ``pk`` (after ``TEXT``), ``bigint``, ``real``, and the
    #: ``suffix`` of the history and steps tables.
    types: ClassVar[dict[str, str]]

    url: str
    prefix: str

    def _prepare(self, url: str, prefix: str) -> None:
        """Name the tables after ``prefix`` and write the statements in this dialect."""
        check_prefix(prefix)
        self.url = url
        self.prefix = prefix
        p = self.marker
        self._e = f'"{prefix}_executions"'
        self._h = f'"{prefix}_history"'
        self._s = f'"{prefix}_steps"'
        self._t = f'"{prefix}_timers"'
        self._select = (
            f"SELECT {_EXEC_COLUMNS} FROM {self._e} e LEFT JOIN {self._t} t ON t.execution = e.name"
        )
        self._insert_event = (
            f"INSERT INTO {self._h} (execution, seq, type, timestamp, details)"
            f" VALUES ({p}, {p}, {p}, {p}, {p})"
        )
        self._upsert_step = self._upsert(
            self._s,
            ("execution", "step_id", "name", "status", "result", "attempt", "state"),
            ("execution", "step_id"),
        )
        self._set_timer = self._upsert(self._t, ("execution", "due_at"), ("execution",))
        self._clear_timer = f"DELETE FROM {self._t} WHERE execution = {p}"

    # -- the dialect -----------------------------------------------------------------------------

    @abstractmethod
    def _upsert(
        self, table: str, columns: Sequence[str], keys: Sequence[str], source: str | None = None
    ) -> str:
        """Insert ``columns`` (from ``VALUES`` or the ``source`` query) replacing on ``keys``."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[C]:
        """One transaction, committed when the block exits normally."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[C]:
        """Statements that each commit on their own."""

    @abstractmethod
    def _claim_scope(self) -> AbstractContextManager[C]:
        """Where ``claim``'s single ``UPDATE`` runs."""

    @abstractmethod
    def _wake_scope(self) -> AbstractContextManager[C]:
        """Where ``wake``'s single upsert runs."""

    @abstractmethod
    def _run(self, c: C, text: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement."""

    @abstractmethod
    def _run_many(self, c: C, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    @abstractmethod
    def _delete_steps(self, c: C, name: str, step_ids: Sequence[int]) -> None:
        """Remove the step records ``step_ids`` of ``name``."""

    # -- shared pieces ---------------------------------------------------------------------------

    def _schema(self) -> list[str]:
        """The ``CREATE`` statements of the four tables and their indexes, in this dialect."""
        pk, big, real, suffix = (self.types[k] for k in ("pk", "bigint", "real", "suffix"))
        return [
            f"CREATE TABLE IF NOT EXISTS {self._e} ("
            f" name TEXT {pk}, kind TEXT NOT NULL, definition TEXT NOT NULL,"
            " input TEXT NOT NULL, status TEXT NOT NULL, output TEXT, error TEXT, cause TEXT,"
            f" checkpoint TEXT NOT NULL, version {big} NOT NULL DEFAULT 0, owner TEXT,"
            f" lease_until {real} NOT NULL DEFAULT 0, runs INTEGER NOT NULL DEFAULT 0,"
            f" next_seq {big} NOT NULL DEFAULT 1, started_at {real} NOT NULL,"
            f" updated_at {real} NOT NULL, parent TEXT)",
            f'CREATE INDEX IF NOT EXISTS "{self.prefix}_exec_status"'
            f" ON {self._e} (status, started_at)",
            f'CREATE INDEX IF NOT EXISTS "{self.prefix}_exec_parent" ON {self._e} (parent)',
            f"CREATE TABLE IF NOT EXISTS {self._h} ("
            f" execution TEXT NOT NULL, seq {big} NOT NULL, type TEXT NOT NULL,"
            f" timestamp {real} NOT NULL, details TEXT NOT NULL,"
            f" PRIMARY KEY (execution, seq)){suffix}",
            f"CREATE TABLE IF NOT EXISTS {self._s} ("
            " execution TEXT NOT NULL, step_id INTEGER NOT NULL, name TEXT NOT NULL,"
            " status TEXT NOT NULL, result TEXT, attempt INTEGER NOT NULL,"
            f" state TEXT NOT NULL, PRIMARY KEY (execution, step_id)){suffix}",
            f"CREATE TABLE IF NOT EXISTS {self._t} ( execution TEXT {pk}, due_at {real} NOT NULL)",
            f'CREATE INDEX IF NOT EXISTS "{self.prefix}_timer_due" ON {self._t} (due_at)',
        ]

    def _fetch(self, c: C, name: str) -> Execution | None:
        row = self._run(c, f"{self._select} WHERE e.name = {self.marker}", (name,)).fetchone()
        return None if row is None else execution_from_row(row)

    def _insert_new(self, c: C, new: NewExecution, now: float) -> bool:
        """Insert ``new`` with its first event and a timer due ``now``; ``False`` if it exists."""
        p = self.marker
        created = (
            self._run(
                c,
                f"INSERT INTO {self._e} (name, kind, definition, input, status, checkpoint,"
                " started_at, updated_at, parent, next_seq)"
                f" VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 2)"
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
            ).rowcount
            == 1
        )
        if created:
            details: dict[str, Any] = {"input": json.loads(new.input)}
            if new.parent is not None:
                details["parent"] = new.parent
            self._run(
                c, self._insert_event, (new.name, 1, "ExecutionStarted", now, json.dumps(details))
            )
            self._run(c, self._set_timer, (new.name, now))
        return created

    def _apply(self, c: C, name: str, update: Update, now: float, first_seq: int) -> None:
        if update.events:
            self._run_many(
                c,
                self._insert_event,
                [
                    (name, first_seq + i, kind, now, json.dumps(details, separators=(",", ":")))
                    for i, (kind, details) in enumerate(update.events)
                ],
            )
        if update.delete_steps:
            self._delete_steps(c, name, update.delete_steps)
        if update.steps:
            self._run_many(
                c,
                self._upsert_step,
                [
                    (name, s.step_id, s.name, s.status, s.result, s.attempt, s.state)
                    for s in update.steps
                ],
            )
        if update.wake_at is not None:
            self._run(c, self._set_timer, (name, update.wake_at))
        elif update.clear_timer:
            self._run(c, self._clear_timer, (name,))

    # -- the protocol ----------------------------------------------------------------------------

    def get(self, name: str) -> Execution | None:
        """The execution called ``name``, or ``None``."""
        with self._read() as c:
            return self._fetch(c, name)

    def claim(self, name: str, owner: str, now: float, lease: float) -> Execution | None:
        """Take a RUNNING execution whose lease is free or expired (one statement)."""
        p = self.marker
        with self._claim_scope() as c:
            # fetchall() runs the statement to completion, so that an autocommit one has
            # committed before this returns.
            rows = self._run(
                c,
                f"UPDATE {self._e} SET owner = {p}, lease_until = {p}, runs = runs + 1"
                f" WHERE name = {p} AND status = 'RUNNING'"
                f" AND (owner IS NULL OR lease_until <= {p})"
                f" RETURNING {_CLAIMED}",
                (owner, now + lease, name, now),
            ).fetchall()
        # The timer is not read: a claimed execution is advanced now, whatever its timer says.
        return execution_from_row((*rows[0], None)) if rows else None

    def commit(self, name: str, owner: str, update: Update, now: float, lease_until: float) -> int:
        """Apply ``update`` atomically if ``owner`` holds the lease; see the protocol."""
        p = self.marker
        events = update.events
        with self._write() as c:
            row = self._run(
                c,
                f"UPDATE {self._e} SET version = version + 1, updated_at = {p},"
                f" next_seq = next_seq + {p}, checkpoint = COALESCE({p}, checkpoint),"
                f" status = COALESCE({p}, status), output = COALESCE({p}, output),"
                f" error = COALESCE({p}, error), cause = COALESCE({p}, cause),"
                f" owner = CASE WHEN {p} THEN NULL ELSE owner END,"
                f" lease_until = CASE WHEN {p} THEN 0 ELSE {p} END"
                f" WHERE name = {p} AND owner = {p} RETURNING next_seq, version",
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
            self._apply(c, name, update, now, int(row[0]) - len(events))
        return int(row[1])

    def reopen(self, name: str, update: Update, now: float) -> bool:
        """Set a FAILED execution RUNNING again and due now; see the protocol."""
        p = self.marker
        events = update.events
        with self._write() as c:
            row = self._run(
                c,
                f"UPDATE {self._e} SET status = 'RUNNING', output = NULL, error = NULL,"
                " cause = NULL, owner = NULL, lease_until = 0, version = version + 1,"
                f" updated_at = {p}, next_seq = next_seq + {p},"
                f" checkpoint = COALESCE({p}, checkpoint)"
                f" WHERE name = {p} AND status = 'FAILED' RETURNING next_seq",
                (now, len(events), update.checkpoint, name),
            ).fetchone()
            if row is None:
                return False
            self._apply(c, name, update, now, int(row[0]) - len(events))
            wake = now if update.wake_at is None else update.wake_at
            self._run(c, self._set_timer, (name, wake))
        return True

    def wake(self, name: str, at: float) -> None:
        """Set the timer of a RUNNING execution to ``at``."""
        p = self.marker
        source = f"SELECT name, {p} FROM {self._e} WHERE name = {p} AND status = 'RUNNING'"
        with self._wake_scope() as c:
            upsert = self._upsert(self._t, ("execution", "due_at"), ("execution",), source)
            self._run(c, upsert, (at, name))

    def history(self, name: str, after: int = 0) -> list[HistoryEvent]:
        """Events with ``seq > after``, in order."""
        p = self.marker
        with self._read() as c:
            rows = self._run(
                c,
                f"SELECT seq, type, timestamp, details FROM {self._h}"
                f" WHERE execution = {p} AND seq > {p} ORDER BY seq",
                (name, after),
            ).fetchall()
        return [HistoryEvent(name, int(s), t, float(ts), json.loads(d)) for s, t, ts, d in rows]

    def steps(self, name: str) -> list[StepRecord]:
        """The recorded steps of a Python-native execution, by ``step_id``."""
        with self._read() as c:
            rows = self._run(
                c,
                f"SELECT step_id, name, status, result, attempt, state FROM {self._s}"
                f" WHERE execution = {self.marker} ORDER BY step_id",
                (name,),
            ).fetchall()
        return [StepRecord(int(i), n, st, r, int(a), s) for i, n, st, r, a, s in rows]

    def due(self, now: float, limit: int) -> list[str]:
        """Names of executions whose timer is due and whose lease is free, soonest first."""
        p = self.marker
        with self._read() as c:
            rows = self._run(
                c,
                f"SELECT t.execution FROM {self._t} t JOIN {self._e} e ON e.name = t.execution"
                f" WHERE t.due_at <= {p} AND e.status = 'RUNNING'"
                f" AND (e.owner IS NULL OR e.lease_until <= {p}) ORDER BY t.due_at LIMIT {p}",
                (now, now, limit),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def next_wake(self) -> float | None:
        """The earliest timer of any RUNNING execution, or ``None``."""
        with self._read() as c:
            row = self._run(
                c,
                f"SELECT MIN(t.due_at) FROM {self._t} t JOIN {self._e} e ON e.name = t.execution"
                " WHERE e.status = 'RUNNING'",
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def executions(
        self, status: ExecutionStatus | None = None, *, parent: str | None = None, limit: int = 100
    ) -> list[Execution]:
        """Executions (optionally of one status or one parent), oldest first."""
        p = self.marker
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append(f"e.status = {p}")
            params.append(status.value)
        if parent is not None:
            clauses.append(f"e.parent = {p}")
            params.append(parent)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read() as c:
            rows = self._run(
                c,
                f"{self._select}{where} ORDER BY e.started_at, e.name LIMIT {p}",
                (*params, limit),
            ).fetchall()
        return [execution_from_row(r) for r in rows]
