"""Durable queue throughput: send, receive and delete, side by side with peers, in one run.

    python benchmarks/queues.py [--messages N] [--repeats N] [--only sqlite,postgres]
                                [--json] [--quick]

Cases (messages/s, one thread, a 100-byte JSON body):

* ``send_sqlite`` -- stormproof's SQLite queue (``open_queue("sqlite:///...")``: WAL,
  ``synchronous=NORMAL``, one committed transaction per send) against persist-queue's
  ``SQLiteAckQueue.put`` (WAL; its connections set to ``synchronous=NORMAL`` too, so both
  commit the same way; JSON serializer).
* ``receive_delete_sqlite`` -- one message received (made invisible for 30 s, its receive count
  raised, a receipt issued) and then deleted: two transactions per message. Peer: persist-queue's
  ``get`` + ``ack`` (mark the row unacked, then acked: also two transactions).
* ``receive10_delete_sqlite`` -- ``receive`` of up to 10 messages at a time (SQS's batch size),
  each then deleted. No peer: persist-queue hands out one message per ``get``.
* ``send_postgres``, ``receive_delete_postgres``, ``receive10_delete_postgres`` -- the same on
  PostgreSQL (127.0.0.1:5432, database ``test``) when it answers. Peer: ``pq`` 1.9 (psycopg2),
  the transactional queue built on ``SELECT ... FOR UPDATE SKIP LOCKED``: ``put``, and ``get``
  that marks the row dequeued in one transaction. ``pq`` has no visibility timeout or
  acknowledgement: a message it hands out is gone from the queue at once, so its ``get`` is one
  commit where stormproof's receive + delete are two (at-least-once delivery needs both).

Every message of a run is sent before it is received; each case runs on a fresh queue or
table. The two libraries alternate run by run, so load from other jobs falls on both; rates are
medians of ``--repeats`` runs. ``--json`` prints ``{"case", "ours_per_s", "peer", "peer_per_s",
"ratio"}`` rows (ratio = ours / peer; above 1 is better for us).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _rows import has_module, port_open, print_rows
from stormproof.events.queue import open_queue

BODY = json.dumps({"order": "o-0000001", "amount": 1234, "currency": "EUR", "note": "x" * 40})
PG = "postgresql://postgres@127.0.0.1:5432/test"
PG_LIBPQ = "host=127.0.0.1 port=5432 dbname=test user=postgres"


#: A run: set up (untimed), then the timed part, which returns how many messages it handled.
_Run = Callable[[], Callable[[], int]]


def _rate(run: _Run) -> float:
    timed = run()
    start = time.perf_counter()
    count = timed()
    return count / (time.perf_counter() - start)


# -- stormproof ------------------------------------------------------------------------------------


def _ours(url: str, n: int, batch: int | None) -> _Run:
    """``batch=None``: sends; otherwise receive ``batch`` at a time and delete each."""

    def setup() -> Callable[[], int]:
        queue = open_queue(url)
        queue.init()
        name = f"bench-{uuid.uuid4().hex[:8]}"
        if batch is None:

            def send() -> int:
                for _ in range(n):
                    queue.send(name, BODY, None, time.time())
                queue.close()
                return n

            return send
        for _ in range(n):
            queue.send(name, BODY, None, time.time())

        def consume() -> int:
            handled = 0
            while handled < n:
                messages = queue.receive(name, batch, visibility_timeout=30.0, now=time.time())
                if not messages:
                    raise RuntimeError(f"the queue ran dry after {handled} of {n} messages")
                for message in messages:
                    queue.delete(name, message.receipt)
                handled += len(messages)
            queue.close()
            return handled

        return consume

    return setup


# -- persist-queue (SQLite) -----------------------------------------------------------------------


def _persist_queue(directory: Path, n: int, receive: bool) -> _Run:
    def setup() -> Callable[[], int]:
        import persistqueue
        from persistqueue.serializers import json as json_serializer

        path = directory / f"pq-{uuid.uuid4().hex[:8]}"
        queue = persistqueue.SQLiteAckQueue(str(path), serializer=json_serializer)
        for conn in {id(queue._putter): queue._putter, id(queue._getter): queue._getter}.values():
            conn.execute("PRAGMA synchronous=NORMAL")
        body = json.loads(BODY)
        if not receive:

            def put() -> int:
                for _ in range(n):
                    queue.put(body)
                queue.close()
                return n

            return put
        for _ in range(n):
            queue.put(body)

        def get_ack() -> int:
            for _ in range(n):
                item = queue.get(block=False, raw=True)
                queue.ack(id=item["pqid"])
            queue.close()
            return n

        return get_ack

    return setup


# -- pq (PostgreSQL) ------------------------------------------------------------------------------


def _pq(n: int, receive: bool, tables: list[str]) -> _Run:
    def setup() -> Callable[[], int]:
        import psycopg2
        from pq import PQ

        conn = psycopg2.connect(PG_LIBPQ)
        table = f"pq_bench_{uuid.uuid4().hex[:8]}"
        tables.append(table)
        manager = PQ(conn=conn, table=table)
        manager.create()
        queue = manager["bench"]
        body = json.loads(BODY)
        if not receive:

            def put() -> int:
                for _ in range(n):
                    queue.put(body)
                conn.close()
                return n

            return put
        for _ in range(n):
            queue.put(body)

        def get() -> int:
            for _ in range(n):
                if queue.get(block=False) is None:
                    raise RuntimeError("pq's queue ran dry")
            conn.close()
            return n

        return get

    return setup


def _drop_pq_tables(tables: list[str]) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_LIBPQ)
    conn.autocommit = True
    with conn.cursor() as cur:
        for table in tables:
            cur.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    conn.close()


# -- the table -------------------------------------------------------------------------------------


def _side_by_side(
    case: str, ours: _Run, peer_name: str | None, peer: _Run | None, repeats: int
) -> dict[str, Any]:
    ours_rates: list[float] = []
    peer_rates: list[float] = []
    for _ in range(repeats):
        ours_rates.append(_rate(ours))
        if peer is not None:
            peer_rates.append(_rate(peer))
    row: dict[str, Any] = {
        "case": case,
        "ours_per_s": statistics.median(ours_rates),
        "peer": None,
        "peer_per_s": None,
        "ratio": None,
    }
    if peer is not None:
        peer_rate = statistics.median(peer_rates)
        row.update(peer=peer_name, peer_per_s=peer_rate, ratio=row["ours_per_s"] / peer_rate)
    return row


def sqlite_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)

        def url() -> str:
            return f"sqlite:///{directory / uuid.uuid4().hex[:8]}.db"

        peer = "persist-queue SQLiteAckQueue" if has_module("persistqueue") else None
        return [
            _side_by_side(
                "send_sqlite",
                lambda: _ours(url(), n, None)(),
                peer,
                _persist_queue(directory, n, receive=False) if peer else None,
                repeats,
            ),
            _side_by_side(
                "receive_delete_sqlite",
                lambda: _ours(url(), n, 1)(),
                peer,
                _persist_queue(directory, n, receive=True) if peer else None,
                repeats,
            ),
            _side_by_side(
                "receive10_delete_sqlite", lambda: _ours(url(), n, 10)(), None, None, repeats
            ),
        ]


def postgres_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    tables: list[str] = []
    peer = "pq (psycopg2)" if has_module("pq") and has_module("psycopg2") else None
    url = f"{PG}?table=sp_qbench_{uuid.uuid4().hex[:8]}"
    try:
        return [
            _side_by_side(
                "send_postgres",
                _ours(url, n, None),
                peer,
                _pq(n, False, tables) if peer else None,
                repeats,
            ),
            _side_by_side(
                "receive_delete_postgres",
                _ours(url, n, 1),
                peer,
                _pq(n, True, tables) if peer else None,
                repeats,
            ),
            _side_by_side("receive10_delete_postgres", _ours(url, n, 10), None, None, repeats),
        ]
    finally:
        queue = open_queue(url)
        drop = getattr(queue, "drop", None)
        if drop is not None:
            drop()
        queue.close()
        if tables:
            _drop_pq_tables(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="sqlite,postgres")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.repeats = 100, 1
    only = set(args.only.split(","))
    rows = sqlite_rows(args.messages, args.repeats) if "sqlite" in only else []
    if "postgres" in only and port_open(5432) and has_module("psycopg"):
        rows += postgres_rows(max(args.messages // 2, 1), args.repeats)
    print_rows(rows, as_json=args.json, ratio_digits=2)


if __name__ == "__main__":
    main()
