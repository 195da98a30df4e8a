"""Queues with dead-letter queues in PostgreSQL (psycopg 3, pooled).

The URL and the connection pool are those of :class:`stormproof.stores.postgres.PostgresStore`,
which this back end reuses; ``table`` defaults to ``stormproof_queue``. ``receive``, ``move`` and
``dead_letter`` each run in one transaction that selects its rows ``FOR UPDATE SKIP LOCKED``:
concurrent receivers skip the rows another one is taking instead of waiting for them or taking
them too, and the re-check PostgreSQL does after locking a row that changed since the snapshot
drops rows another receiver has just hidden. Bodies, queue names and attributes that contain
NUL are stored escaped, as in the store.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping

import psycopg
from psycopg import sql

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
from stormproof.stores.postgres import _SCHEMA_LOCK, PostgresStore, _decode, _encode

__all__ = ["PostgresQueue"]

_COLUMNS = sql.SQL(COLUMNS)
#: ``max_receives`` of a queue without a policy: more than an INTEGER receive count can hold.
_NO_LIMIT = 2**31


class PostgresQueue:
    """Named queues in one PostgreSQL table; see :mod:`stormproof.events.queue`."""

    def __init__(self, url: str, *, policies: Mapping[str, QueuePolicy] | None = None) -> None:
        self.url = url
        self.policies = check_policies(policies)
        self._store = PostgresStore(with_default_table(url))
        self.table = self._store.table
        t = sql.Identifier(self.table)
        self._t = t
        self._create = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " seq BIGSERIAL PRIMARY KEY,"
            " id TEXT NOT NULL,"
            " queue TEXT NOT NULL,"
            " body TEXT NOT NULL,"
            " attributes TEXT NOT NULL,"
            " sent_at DOUBLE PRECISION NOT NULL,"
            " receive_count INTEGER NOT NULL DEFAULT 0,"
            " visible_at DOUBLE PRECISION NOT NULL,"
            " receipt TEXT)"
        ).format(t)
        self._indexes = [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (queue, sent_at, seq)").format(
                sql.Identifier(f"{self.table[:55]}_order"), t
            ),
        ]
        self._insert = sql.SQL(
            "INSERT INTO {} (id, queue, body, attributes, sent_at, receive_count,"
            " visible_at, receipt) VALUES (%s, %s, %s, %s, %s, 0, %s, NULL)"
        ).format(t)
        self._select_ready = sql.SQL(
            "SELECT {c} FROM {t} WHERE queue = %s AND visible_at <= %s"
            " AND (sent_at, seq) > (%s, %s) ORDER BY sent_at, seq LIMIT %s"
            " FOR UPDATE SKIP LOCKED"
        ).format(c=_COLUMNS, t=t)
        # receive in one statement: pick, hide and issue receipts (the row's seq and 122 random
        # bits, the form of _queue_sql.new_receipt) -- unless a picked row is one the policy
        # condemns, which the statement then reports instead of delivering anything, and the
        # general path (receive_ready, in a transaction) moves it to the DLQ.
        null_row = "NULL::bigint, NULL, NULL, NULL, NULL, NULL::float8, NULL::int, NULL::float8"
        null_row += ", NULL"
        self._receive_at_once = sql.SQL(
            "WITH picked AS (SELECT seq, receive_count, sent_at FROM {t}"
            " WHERE queue = %(queue)s AND visible_at <= %(now)s ORDER BY sent_at, seq"
            " LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
            " condemned AS (SELECT 1 FROM picked WHERE receive_count >= %(max_receives)s"
            " OR %(now)s - sent_at > %(max_age)s LIMIT 1),"
            " delivered AS (UPDATE {t} AS m SET visible_at = %(visible_at)s,"
            " receive_count = m.receive_count + 1,"
            " receipt = m.seq::text || '.' || replace(gen_random_uuid()::text, '-', '')"
            " FROM picked WHERE m.seq = picked.seq AND NOT EXISTS (SELECT 1 FROM condemned)"
            " RETURNING {m})"
            " SELECT false, * FROM delivered"
            " UNION ALL SELECT true, " + null_row + " FROM condemned"
        ).format(
            t=t,
            m=sql.SQL(", ").join(sql.SQL("m.") + sql.Identifier(c) for c in COLUMNS.split(", ")),
        )
        self._deliver = sql.SQL(
            "UPDATE {} SET visible_at = %s, receive_count = receive_count + 1, receipt = %s"
            " WHERE seq = %s"
        ).format(t)
        self._relocate = sql.SQL(
            "UPDATE {} SET queue = %s, attributes = %s, sent_at = %s, visible_at = %s,"
            " receive_count = 0, receipt = NULL WHERE seq = %s"
        ).format(t)

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the tables if missing and record the schema version; safe concurrently."""
        store = self._store
        with store._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cur.execute(store._create_schema)
            cur.execute(self._create)
            for index in self._indexes:
                cur.execute(index)
            cur.execute(store._record_version, (self.table, QUEUE_SCHEMA_VERSION))

    def schema_version(self) -> int | None:
        """The version ``init`` recorded for this table, or ``None``."""
        return self._store.schema_version()

    # -- messages --------------------------------------------------------------------------------

    def send(self, queue: str, body: str, attributes: Mapping[str, str] | None, now: float) -> str:
        """Append a message, visible at once; returns its id (uuid4 hex)."""
        attrs = check_send(queue, body, attributes)
        check_now(now)
        message_id = uuid.uuid4().hex
        with self._store._statement() as cur:
            cur.execute(
                self._insert,
                (
                    message_id,
                    _encode(queue),
                    _encode(body),
                    _encode(dump_attributes(attrs)),
                    now,
                    now,
                ),
            )
        return message_id

    def receive(
        self, queue: str, max_messages: int, visibility_timeout: float, now: float
    ) -> list[Message]:
        """Deliver up to ``max_messages``; dead-letter the ones the policy condemns."""
        check_receive(queue, max_messages, visibility_timeout)
        check_now(now)
        policy = self.policies.get(queue)
        params = {
            "queue": _encode(queue),
            "now": now,
            "limit": max_messages,
            "visible_at": now + visibility_timeout,
            "max_receives": _NO_LIMIT if policy is None else policy.max_receive_count,
            "max_age": math.inf if policy is None else policy.max_age,
        }
        with self._store._statement() as cur:
            rows = cur.execute(self._receive_at_once, params, prepare=True).fetchall()
        if not any(row[0] for row in rows):
            rows.sort(key=lambda row: (row[6], row[1]))  # (sent_at, seq): oldest first
            return [row_message(row[1:], _decode) for row in rows]
        with self._store._transaction() as cur:
            return receive_ready(
                queue,
                self.policies.get(queue),
                max_messages,
                visibility_timeout,
                now,
                select=lambda sent_at, seq, limit: cur.execute(
                    self._select_ready, (_encode(queue), now, sent_at, seq, limit)
                ).fetchall(),
                deliver=lambda seq, visible_at, receipt: cur.execute(
                    self._deliver, (visible_at, receipt, seq)
                ),
                relocate=lambda seq, dlq, attributes: self._to_dlq(cur, seq, dlq, attributes, now),
                decode=_decode,
            )

    def _to_dlq(
        self, cur: psycopg.Cursor[Row], seq: int, dlq: str, attributes: str, now: float
    ) -> None:
        cur.execute(self._relocate, (_encode(dlq), _encode(attributes), now, now, seq))

    @staticmethod
    def _holding(queue: str, receipt: str) -> tuple[sql.SQL, tuple[object, ...]]:
        """The WHERE clause (and its parameters) of the row of ``queue`` holding ``receipt``."""
        where, params = holding(_encode(queue), _encode(receipt), "%s")
        return sql.SQL(where), params  # fixed column names and placeholders only

    def delete(self, queue: str, receipt: str) -> bool:
        """Delete the message whose latest receipt is ``receipt``."""
        check_queue_name(queue)
        where, params = self._holding(queue, receipt)
        with self._store._statement() as cur:
            cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(self._t, where), params)
            return cur.rowcount == 1

    def change_visibility(self, queue: str, receipt: str, timeout: float, now: float) -> bool:
        """Hide the in-flight message holding ``receipt`` until ``now + timeout``."""
        check_receive(queue, 1, timeout)
        check_now(now)
        where, params = self._holding(queue, receipt)
        with self._store._statement() as cur:
            cur.execute(
                sql.SQL("UPDATE {} SET visible_at = %s WHERE {} AND visible_at > %s").format(
                    self._t, where
                ),
                (now + timeout, *params, now),
            )
            return cur.rowcount == 1

    def dead_letter(self, queue: str, receipt: str, reason: str, now: float) -> bool:
        """Move the message holding ``receipt`` to the DLQ of ``queue``."""
        check_queue_name(queue)
        check_now(now)
        with self._store._transaction() as cur:
            where, params = self._holding(queue, receipt)
            cur.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} FOR UPDATE").format(_COLUMNS, self._t, where),
                params,
            )
            row = cur.fetchone()
            if row is None:
                return False
            attributes = dead_letter_attributes_of(row_message(row, _decode), reason)
            self._to_dlq(cur, int(row[0]), dlq_of(self.policies, queue), attributes, now)
            return True

    def move(self, source: str, target: str, max_messages: int, now: float) -> list[str]:
        """Move up to ``max_messages`` visible messages of ``source``, oldest first, atomically."""
        check_receive(source, max_messages, 0.0)
        check_queue_name(target, "target")
        check_now(now)
        with self._store._transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT seq, id FROM {} WHERE queue = %s AND visible_at <= %s"
                    " ORDER BY sent_at, seq LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(self._t),
                (_encode(source), now, max_messages),
            )
            rows = cur.fetchall()
            if rows:
                cur.execute(
                    sql.SQL(
                        "UPDATE {} SET queue = %s, sent_at = %s, visible_at = %s,"
                        " receive_count = 0, receipt = NULL WHERE seq = ANY(%s)"
                    ).format(self._t),
                    (_encode(target), now, now, [int(row[0]) for row in rows]),
                )
        return [str(row[1]) for row in rows]

    # -- inspection ------------------------------------------------------------------------------

    def depth(self, queue: str, now: float) -> tuple[int, int]:
        """``(visible, in_flight)``."""
        check_queue_name(queue)
        with self._store._transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT count(*) FILTER (WHERE visible_at <= %s),"
                    " count(*) FILTER (WHERE visible_at > %s) FROM {} WHERE queue = %s"
                ).format(self._t),
                (now, now, _encode(queue)),
            )
            row = cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def oldest_age(self, queue: str, now: float) -> float | None:
        """Seconds since the oldest message arrived in ``queue``; ``None`` when empty."""
        check_queue_name(queue)
        with self._store._transaction() as cur:
            cur.execute(
                sql.SQL("SELECT MIN(sent_at) FROM {} WHERE queue = %s").format(self._t),
                (_encode(queue),),
            )
            row = cur.fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, now - float(row[0]))

    def peek(self, queue: str, max_messages: int = 10) -> list[Message]:
        """The oldest messages, visible or not, unchanged."""
        check_receive(queue, max_messages, 0.0)
        with self._store._transaction() as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM {} WHERE queue = %s ORDER BY sent_at, seq LIMIT %s").format(
                    _COLUMNS, self._t
                ),
                (_encode(queue), max_messages),
            )
            rows = cur.fetchall()
        return [row_message(row, _decode) for row in rows]

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pool; a later call opens a new one."""
        self._store.close()

    def drop(self) -> None:
        """Drop the messages table and its schema row (tests and tear-down only)."""
        self._store.drop()
