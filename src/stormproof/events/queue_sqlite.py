"""Queues with dead-letter queues in an SQLite file (stdlib only).

The URL, durability and connection handling are those of :class:`stormproof.stores.sqlite.
SQLiteStore` (WAL, one connection per thread, fork-safe), which this back end reuses; ``table``
defaults to ``stormproof_queue``. Every operation that changes more than one row -- ``receive``
(deliveries and dead-lettering together), ``dead_letter`` and ``move`` -- is one ``BEGIN
IMMEDIATE`` transaction: it takes the database's write lock up front, so concurrent receivers in
any number of processes never get the same message while its visibility timeout holds, and a
process killed mid-way (even ``kill -9``) leaves either all of a batch moved or none of it.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Mapping

from stormproof.events._queue_sql import (
    COLUMNS,
    Row,
    dead_letter_attributes_of,
    holding,
    receive_ready,
    row_message,
)
from stormproof.events.queue import (
    QUEUE_SCHEMA_VERSION,
    Message,
    QueuePolicy,
    check_now,
    check_policies,
    check_queue_name,
    check_receive,
    check_send,
    dlq_of,
    dump_attributes,
    with_default_table,
)
from stormproof.stores.sqlite import SCHEMA_TABLE, SQLiteStore

__all__ = ["SQLiteQueue"]


class SQLiteQueue:
    """Named queues in one table of an SQLite file; see :mod:`stormproof.events.queue`."""

    def __init__(self, url: str, *, policies: Mapping[str, QueuePolicy] | None = None) -> None:
        self.url = url
        self.policies = check_policies(policies)
        self._store = SQLiteStore(with_default_table(url))
        self.table = self._store.config.table
        t = f'"{self.table}"'
        self._t = t
        self._select_ready = (
            f"SELECT {COLUMNS} FROM {t} WHERE queue = ? AND visible_at <= ?"
            " AND (sent_at, seq) > (?, ?) ORDER BY sent_at, seq LIMIT ?"
        )
        self._deliver = (
            f"UPDATE {t} SET visible_at = ?, receive_count = receive_count + 1, receipt = ?"
            " WHERE seq = ?"
        )
        self._relocate = (
            f"UPDATE {t} SET queue = ?, attributes = ?, sent_at = ?, visible_at = ?,"
            " receive_count = 0, receipt = NULL WHERE seq = ?"
        )

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the messages and schema tables if missing and record the schema version."""
        t, name = self._t, self.table
        with self._store._write() as conn:
            # seq without AUTOINCREMENT: a new row gets max(seq) + 1, above every live row, which
            # is all that ordering and receipts need (a receipt also carries a random part), and
            # a send writes no sqlite_sequence row. Tables made with AUTOINCREMENT and with a
            # unique index on id or an index on receipts (before 2026-12) work the same.
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} ("
                " seq INTEGER PRIMARY KEY,"
                " id TEXT NOT NULL,"
                " queue TEXT NOT NULL,"
                " body TEXT NOT NULL,"
                " attributes TEXT NOT NULL,"
                " sent_at REAL NOT NULL,"
                " receive_count INTEGER NOT NULL DEFAULT 0,"
                " visible_at REAL NOT NULL,"
                " receipt TEXT)"
            )
            conn.execute(f'CREATE INDEX IF NOT EXISTS "{name}_order" ON {t} (queue, sent_at, seq)')
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ("
                " name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
            )
            conn.execute(
                f"INSERT OR IGNORE INTO {SCHEMA_TABLE} (name, version) VALUES (?, ?)",
                (name, QUEUE_SCHEMA_VERSION),
            )

    def schema_version(self) -> int | None:
        """The version ``init`` recorded for this table, or ``None``."""
        return self._store.schema_version()

    # -- messages --------------------------------------------------------------------------------

    def send(self, queue: str, body: str, attributes: Mapping[str, str] | None, now: float) -> str:
        """Append a message, visible at once; returns its id (uuid4 hex)."""
        attrs = check_send(queue, body, attributes)
        check_now(now)
        message_id = uuid.uuid4().hex
        self._store._conn().execute(
            f"INSERT INTO {self._t} (id, queue, body, attributes, sent_at, receive_count,"
            " visible_at, receipt) VALUES (?, ?, ?, ?, ?, 0, ?, NULL)",
            (message_id, queue, body, dump_attributes(attrs), now, now),
        )
        return message_id

    def receive(
        self, queue: str, max_messages: int, visibility_timeout: float, now: float
    ) -> list[Message]:
        """Deliver up to ``max_messages``; dead-letter the ones the policy condemns."""
        check_receive(queue, max_messages, visibility_timeout)
        check_now(now)
        with self._store._write() as conn:
            return receive_ready(
                queue,
                self.policies.get(queue),
                max_messages,
                visibility_timeout,
                now,
                select=lambda sent_at, seq, limit: conn.execute(
                    self._select_ready, (queue, now, sent_at, seq, limit)
                ).fetchall(),
                deliver=lambda seq, visible_at, receipt: conn.execute(
                    self._deliver, (visible_at, receipt, seq)
                ),
                relocate=lambda seq, dlq, attributes: self._to_dlq(conn, seq, dlq, attributes, now),
            )

    def _to_dlq(
        self, conn: sqlite3.Connection, seq: int, dlq: str, attributes: str, now: float
    ) -> None:
        conn.execute(self._relocate, (dlq, attributes, now, now, seq))

    def delete(self, queue: str, receipt: str) -> bool:
        """Delete the message whose latest receipt is ``receipt``."""
        check_queue_name(queue)
        where, params = holding(queue, receipt, "?")
        cursor = self._store._conn().execute(f"DELETE FROM {self._t} WHERE {where}", params)
        return cursor.rowcount == 1

    def change_visibility(self, queue: str, receipt: str, timeout: float, now: float) -> bool:
        """Hide the in-flight message holding ``receipt`` until ``now + timeout``."""
        check_receive(queue, 1, timeout)
        check_now(now)
        where, params = holding(queue, receipt, "?")
        cursor = self._store._conn().execute(
            f"UPDATE {self._t} SET visible_at = ? WHERE {where} AND visible_at > ?",
            (now + timeout, *params, now),
        )
        return cursor.rowcount == 1

    def dead_letter(self, queue: str, receipt: str, reason: str, now: float) -> bool:
        """Move the message holding ``receipt`` to the DLQ of ``queue``."""
        check_queue_name(queue)
        check_now(now)
        with self._store._write() as conn:
            where, params = holding(queue, receipt, "?")
            row: Row | None = conn.execute(
                f"SELECT {COLUMNS} FROM {self._t} WHERE {where}", params
            ).fetchone()
            if row is None:
                return False
            attributes = dead_letter_attributes_of(row_message(row), reason)
            self._to_dlq(conn, row[0], dlq_of(self.policies, queue), attributes, now)
            return True

    def move(self, source: str, target: str, max_messages: int, now: float) -> list[str]:
        """Move up to ``max_messages`` visible messages of ``source``, oldest first, atomically."""
        check_receive(source, max_messages, 0.0)
        check_queue_name(target, "target")
        check_now(now)
        with self._store._write() as conn:
            rows = conn.execute(
                f"SELECT seq, id FROM {self._t} WHERE queue = ? AND visible_at <= ?"
                " ORDER BY sent_at, seq LIMIT ?",
                (source, now, max_messages),
            ).fetchall()
            conn.executemany(
                f"UPDATE {self._t} SET queue = ?, sent_at = ?, visible_at = ?,"
                " receive_count = 0, receipt = NULL WHERE seq = ?",
                [(target, now, now, seq) for seq, _id in rows],
            )
        return [str(message_id) for _seq, message_id in rows]

    # -- inspection ------------------------------------------------------------------------------

    def depth(self, queue: str, now: float) -> tuple[int, int]:
        """``(visible, in_flight)``."""
        check_queue_name(queue)
        row = (
            self._store._conn()
            .execute(
                "SELECT COALESCE(SUM(CASE WHEN visible_at <= ? THEN 1 ELSE 0 END), 0),"
                f" COALESCE(SUM(CASE WHEN visible_at > ? THEN 1 ELSE 0 END), 0)"
                f" FROM {self._t} WHERE queue = ?",
                (now, now, queue),
            )
            .fetchone()
        )
        return int(row[0]), int(row[1])

    def oldest_age(self, queue: str, now: float) -> float | None:
        """Seconds since the oldest message arrived in ``queue``; ``None`` when empty."""
        check_queue_name(queue)
        (oldest,) = (
            self._store._conn()
            .execute(f"SELECT MIN(sent_at) FROM {self._t} WHERE queue = ?", (queue,))
            .fetchone()
        )
        return None if oldest is None else max(0.0, now - float(oldest))

    def peek(self, queue: str, max_messages: int = 10) -> list[Message]:
        """The oldest messages, visible or not, unchanged."""
        check_receive(queue, max_messages, 0.0)
        rows: list[Row] = (
            self._store._conn()
            .execute(
                f"SELECT {COLUMNS} FROM {self._t} WHERE queue = ? ORDER BY sent_at, seq LIMIT ?",
                (queue, max_messages),
            )
            .fetchall()
        )
        return [row_message(row) for row in rows]

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close this process's connections; a later call reconnects."""
        self._store.close()

    def drop(self) -> None:
        """Drop the messages table and its schema row (tests and tear-down only)."""
        self._store.drop()
