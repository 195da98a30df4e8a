"""8 processes deliver the same 1,000 events (8 deliveries each): every side effect exactly once.

The side effect is a row in a separate SQLite table, written inside the guarded function; the
idempotency records live in the back end under test. Duplicates that find an event in progress
wait for its result, so every delivery returns the same answer.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from pathlib import Path

import pytest
from store_services import store_url

from stormproof import stores
from stormproof.events.idempotency import Idempotency, IdempotencyConfig

EVENTS = 1_000
PROCESSES = 8


def _worker(url: str, effects: str, seed: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = stores.open(url)
    engine = Idempotency(
        store, IdempotencyConfig(on_in_progress="wait", wait_timeout=60.0, lease=60.0)
    )
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
    store.close()
    out.put(wrong)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "redis"])
def test_every_side_effect_happens_exactly_once(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    store = stores.open(url)
    store.init()
    effects = str(tmp_path / "effects.db")
    with sqlite3.connect(effects) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE effects (event_id INTEGER NOT NULL)")
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [
        context.Process(target=_worker, args=(url, effects, seed, out)) for seed in range(PROCESSES)
    ]
    try:
        for worker in workers:
            worker.start()
        wrong = [out.get(timeout=240) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        assert wrong == [0] * PROCESSES  # every delivery got the stored, correct result
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
