"""Reliable event processing on the embedded SQLite store: duplicates, bad events, a poison pill.

A stream of 1,000 order events arrives with the usual defects of at-least-once delivery: a third
of them are delivered twice, a few are malformed, one makes the handler fail every time. The
pipeline validates (bad events set aside by reason), processes batches with partial failures
(the poison pill dead-lettered after three deliveries), and charges each order exactly once
through an idempotency record in SQLite.

    python examples/idempotent_orders.py [path/to/stormproof.db]
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from stormproof import stores
from stormproof.events import (
    BatchProcessor,
    Idempotency,
    IdempotencyConfig,
    Record,
    ValidationPolicy,
)

ORDER = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer", "minimum": 1}},
}


def deliveries(rng: random.Random) -> list[str]:
    """1,000 orders as JSON text; a third delivered twice, a few malformed, order 666 poisoned."""
    events = []
    for n in range(1000):
        event = json.dumps({"order_id": f"o-{n}", "amount": 1 + n % 50})
        events.append(event)
        if rng.random() < 1 / 3:
            events.append(event)
    events += ['{"order_id": "o-bad", "amount": -5}', '{"amount": 3}', "{not json"]
    rng.shuffle(events)
    return events


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "orders.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    store = stores.open(f"sqlite:///{path.resolve()}")
    store.init()
    engine = Idempotency(store, IdempotencyConfig(ttl=24 * 3600))
    charged: Counter[str] = Counter()
    dead: list[str] = []

    def charge(order: dict[str, Any]) -> dict[str, Any]:
        if order["order_id"] == "o-666":
            raise RuntimeError("payment provider rejects this card")
        charged[order["order_id"]] += 1  # the side effect that must happen once
        return {"charged": order["amount"]}

    def handle(record: Record) -> None:
        order = record.body
        engine.run(f"charge:{order['order_id']}", order, charge, order)

    validation = ValidationPolicy(ORDER, dead_letter=lambda bad: dead.append(bad.reason))
    batches = BatchProcessor(
        handle, max_attempts=3, dead_letter=lambda r, e: dead.append(f"poison: {e}")
    )
    rng = random.Random(2026)
    events = deliveries(rng)
    valid = validation.filter(events)
    queue = [Record(f"m-{i}", body) for i, body in enumerate(valid)]
    batches_run = 0
    while queue:  # redeliver what failed, as a queue would, until nothing is left
        batch, queue = queue[:10], queue[10:]
        result = batches.process(batch)
        batches_run += 1
        by_id = {r.id: r for r in batch}
        queue += [
            Record(rid, by_id[rid].body, attempts=by_id[rid].attempts + 1) for rid in result.retry
        ]

    print(f"store: sqlite:///{path.resolve()} (WAL)")
    print(f"deliveries: {len(events)}  (1,000 orders, duplicates and bad events included)")
    print(f"invalid, set aside by reason: {dict(validation.counts)}")
    print(f"batches processed: {batches_run}")
    print(
        f"orders charged: {len(charged)}; charged more than once: "
        f"{sum(1 for c in charged.values() if c > 1)}"
    )
    print(f"dead-lettered: {len(dead)} -> {Counter(d.split(':')[0] for d in dead)}")


if __name__ == "__main__":
    main()
