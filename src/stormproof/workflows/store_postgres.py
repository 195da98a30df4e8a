"""The workflow store in PostgreSQL (psycopg 3, pooled), for several machines sharing workers.

The URL and pool are those of :class:`stormproof.stores.postgres.PostgresStore`, which this back
end reuses (``pool_min``, ``pool_max``, ``pool_timeout``; autocommit connections). ``table`` is
the prefix of the four tables (default ``stormproof_wf``). Every commit is one transaction
(``conn.transaction()``); the ownership check is the ``UPDATE ... WHERE owner = %s`` that opens
it, whose row lock also serialises history sequence numbers. Durability is PostgreSQL's:
a commit acknowledged with the default ``synchronous_commit = on`` survives a server crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from psycopg import Cursor, sql

from stormproof.stores.postgres import PostgresStore
from stormproof.workflows._store_sql import Rows, SQLWorkflowStore
from stormproof.workflows.store import (
    WORKFLOW_SCHEMA_VERSION,
    Execution,
    NewExecution,
    with_default_prefix,
)

__all__ = ["PostgresWorkflowStore"]

_SCHEMA_TABLE = "stormproof_schema"
#: Serialises concurrent ``init``/``drop`` calls (the key of the idempotency stores' lock + 1).
_SCHEMA_LOCK = int.from_bytes(b"stormprf", "big", signed=True) + 1


def _sql(text: str) -> sql.SQL:
    # Table names are validated identifiers quoted by the base class; everything else is a
    # parameter.
    return sql.SQL(text)  # type: ignore[arg-type,unused-ignore]


class PostgresWorkflowStore(SQLWorkflowStore[Cursor[Any]]):
    """Executions, history, steps and timers in PostgreSQL; see :mod:`.store`."""

    marker: ClassVar[str] = "%s"
    types: ClassVar[dict[str, str]] = {
        "pk": "PRIMARY KEY",
        "bigint": "BIGINT",
        "real": "DOUBLE PRECISION",
        "suffix": "",
    }

    def __init__(self, url: str) -> None:
        self._store = PostgresStore(with_default_prefix(url))
        self._prepare(url, self._store.table)

    # -- the dialect -----------------------------------------------------------------------------

    def _upsert(
        self, table: str, columns: Sequence[str], keys: Sequence[str], source: str | None = None
    ) -> str:
        if source is None:
            source = f"VALUES ({', '.join('%s' for _ in columns)})"
        replaced = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) {source}"
            f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {replaced}"
        )

    def _write(self) -> AbstractContextManager[Cursor[Any]]:
        return self._store._transaction()

    def _read(self) -> AbstractContextManager[Cursor[Any]]:
        return self._store._statement()

    def _claim_scope(self) -> AbstractContextManager[Cursor[Any]]:
        return self._write()

    def _wake_scope(self) -> AbstractContextManager[Cursor[Any]]:
        return self._read()

    def _run(self, c: Cursor[Any], text: str, params: Sequence[Any] = ()) -> Rows:
        return c.execute(_sql(text), params)

    def _run_many(self, c: Cursor[Any], text: str, rows: Sequence[Sequence[Any]]) -> None:
        c.executemany(_sql(text), rows)

    def _delete_steps(self, c: Cursor[Any], name: str, step_ids: Sequence[int]) -> None:
        c.execute(
            _sql(f"DELETE FROM {self._s} WHERE execution = %s AND step_id = ANY(%s)"),
            (name, list(step_ids)),
        )

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the tables if missing and record the schema version (safe concurrently)."""
        with self._store._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in self._schema():
                cur.execute(_sql(statement))
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

    def start(self, new: NewExecution, now: float) -> tuple[Execution, bool]:
        """Create the execution (or return the existing one of that name); see the protocol."""
        with self._store._transaction() as cur:
            created = self._insert_new(cur, new, now)
            found = self._fetch(cur, new.name)
        assert found is not None
        return found, created

    def close(self) -> None:
        """Close the pool."""
        self._store.close()

    def drop(self) -> None:
        """Drop the tables and the version row."""
        with self._store._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for table in (self._e, self._h, self._s, self._t):
                cur.execute(_sql(f"DROP TABLE IF EXISTS {table}"))
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (_SCHEMA_TABLE,))
            exists = cur.fetchone()
            if exists is not None and exists[0]:
                cur.execute(f"DELETE FROM {_SCHEMA_TABLE} WHERE name = %s", (self.prefix,))
