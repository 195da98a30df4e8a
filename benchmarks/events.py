"""Event-processing throughput: validation and idempotent calls, side by side with peers.

    python benchmarks/events.py [--events N] [--json] [--quick]

* ``validation_dicts`` / ``validation_json`` -- events/s through stormproof's
  :class:`~stormproof.events.validation.ValidationPolicy` (fastjsonschema) for already-parsed
  dicts and for JSON text; peer: the ``jsonschema`` library's validator on the same schema.
* ``idempotent_sqlite`` -- idempotent calls/s on the embedded SQLite store (WAL, synchronous
  NORMAL), each call a new key (claim + complete = two committed transactions);
  ``idempotent_duplicate_sqlite`` -- calls/s for a key already completed (one read).
  ``idempotent_postgres`` the same on PostgreSQL when it answers on 127.0.0.1:5432.

Rates are medians of ``--repeats`` runs; ``--json`` prints a list of
``{"case", "ours_per_s", "peer", "peer_per_s", "ratio"}`` (ratio = ours / peer, above 1 is
better for us).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stormproof.events.idempotency import Idempotency
from stormproof.events.validation import ValidationPolicy

SCHEMA = {
    "type": "object",
    "required": ["id", "amount"],
    "properties": {"id": {"type": "string"}, "amount": {"type": "integer", "minimum": 1}},
}


def rate(count: int, run: Callable[[], None], repeats: int) -> float:
    """Median items per second of ``run`` over ``repeats`` runs."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(count / (time.perf_counter() - start))
    return statistics.median(samples)


def validation_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    events = [{"id": str(i), "amount": i + 1} for i in range(n)]
    texts = [json.dumps(e) for e in events]
    policy = ValidationPolicy(SCHEMA)
    ours_dicts = rate(n, lambda: policy.filter(events), repeats)
    ours_json = rate(n, lambda: policy.filter(texts), repeats)
    rows = [
        {"case": "validation_dicts", "ours_per_s": ours_dicts},
        {"case": "validation_json", "ours_per_s": ours_json},
    ]
    try:
        import jsonschema
    except ImportError:
        return [{**r, "peer": None, "peer_per_s": None, "ratio": None} for r in rows]
    validator = jsonschema.Draft7Validator(SCHEMA)

    def peer_dicts() -> None:
        [e for e in events if validator.is_valid(e)]

    def peer_json() -> None:
        [e for e in map(json.loads, texts) if validator.is_valid(e)]

    peers = [rate(n, peer_dicts, repeats), rate(n, peer_json, repeats)]
    return [
        {**row, "peer": "jsonschema", "peer_per_s": peer, "ratio": row["ours_per_s"] / peer}
        for row, peer in zip(rows, peers, strict=True)
    ]


def idempotency_rows(url: str, label: str, n: int, repeats: int) -> list[dict[str, Any]]:
    from stormproof import stores

    store = stores.open(url)
    store.init()
    engine = Idempotency(store)
    try:

        def fresh() -> None:
            prefix = uuid.uuid4().hex
            for i in range(n):
                engine.run(f"{prefix}-{i}", {"i": i}, _identity, i)

        done_key = uuid.uuid4().hex
        engine.run(done_key, {"i": 0}, _identity, 0)

        def duplicate() -> None:
            for _ in range(n):
                engine.run(done_key, {"i": 0}, _identity, 0)

        return [
            {"case": f"idempotent_{label}", "ours_per_s": rate(n, fresh, repeats)},
            {"case": f"idempotent_duplicate_{label}", "ours_per_s": rate(n, duplicate, repeats)},
        ]
    finally:
        drop = getattr(store, "drop", None)
        if drop is not None and label != "sqlite":
            drop()
        store.close()


def _identity(value: int) -> int:
    return value


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events, args.calls, args.repeats = 5_000, 200, 1
    rows = validation_rows(args.events, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        rows += idempotency_rows(url, "sqlite", args.calls, args.repeats)
    if _postgres_up():
        table = f"sp_bench_{uuid.uuid4().hex[:8]}"
        pg = f"postgresql://postgres@127.0.0.1:5432/test?table={table}"
        rows += idempotency_rows(pg, "postgres", args.calls // 5, args.repeats)
    for row in rows:
        row.setdefault("peer", None)
        row.setdefault("peer_per_s", None)
        row.setdefault("ratio", None)
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        peer = ""
        if row["peer"]:
            peer = f"  {row['peer']}: {row['peer_per_s']:>12,.0f}/s  ratio {row['ratio']:.1f}x"
        print(f"{row['case']:<30} {row['ours_per_s']:>12,.0f}/s{peer}")


if __name__ == "__main__":
    main()
