"""8 processes deliver the same 1,000 events (8 deliveries each): every side effect exactly once.

The side effect is a row in a separate SQLite table, written inside the guarded function; the
idempotency records live in the back end under test. Duplicates that find an event in progress
wait for its result, so every delivery returns the same answer. The PostgreSQL run is repeated
with 4 threads in each process sharing one store with ``group_commit=1``, so that claims and
results of one process travel in shared statements while other processes race them.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
from pathlib import Path

import pytest
from store_services import store_url

from stormproof import stores
from stormproof.events.idempotency import Idempotency, IdempotencyConfig

EVENTS = 1_000
PROCESSES = 8


def _deliver_all(engine: Idempotency, effects: str, seed: int) -> int:
    """Deliver every event once, in a shuffled order; how many answers were wrong."""
    side = sqlite3.connect(effects, timeout=60.0, isolation_level=None)

    def handle(event_id: int) -> dict[str, int]:
        side.execute("INSERT INTO effects (event_id) VALUES (?)", (event_id,))
        return {"event": event_id, "total": event_id * 3}

    order = list(range(EVENTS))
    random.Random(seed).shuffle(order)
    wrong = 0
    for event_id in order:
        result = engine.run(f"event-{event_id}", {"id": event_id}, handle, event_id)
        wrong += result != {"event": event_id, "total": event_id * 3}
    side.close()
    return wrong


def _worker(
    url: str, effects: str, seed: int, out: multiprocessing.Queue, threads: int = 1
) -> None:  # type: ignore[type-arg]
    store = stores.open(url)
    engine = Idempotency(
        store, IdempotencyConfig(on_in_progress="wait", wait_timeout=60.0, lease=60.0)
    )
    wrong = [0] * threads

    def deliver(index: int) -> None:
        wrong[index] = _deliver_all(engine, effects, seed * 100 + index)

    pool = [threading.Thread(target=deliver, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    store.close()
    out.put(sum(wrong))


@pytest.mark.parametrize(
    ("backend", "threads"),
    [("sqlite", 1), ("postgresql", 1), ("postgresql", 4), ("redis", 1)],
    ids=["sqlite", "postgresql", "postgresql-group-commit", "redis"],
)
def test_every_side_effect_happens_exactly_once(backend: str, threads: int, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    processes = PROCESSES if threads == 1 else PROCESSES // 2
    if threads > 1:
        url += "&group_commit=1&pool_max=4"
    store = stores.open(url)
    store.init()
    effects = str(tmp_path / "effects.db")
    with sqlite3.connect(effects) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE effects (event_id INTEGER NOT NULL)")
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [
        context.Process(target=_worker, args=(url, effects, seed, out, threads))
        for seed in range(processes)
    ]
    try:
        for worker in workers:
            worker.start()
        wrong = [out.get(timeout=240) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        assert wrong == [0] * processes  # every delivery got the stored, correct result
        with sqlite3.connect(effects) as conn:
            counts = dict(
                conn.execute("SELECT event_id, COUNT(*) FROM effects GROUP BY event_id").fetchall()
            )
        assert len(counts) == EVENTS
        assert set(counts.values()) == {1}
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
        drop = getattr(store, "drop", None)
        if drop is not None:
            drop()
        store.close()
