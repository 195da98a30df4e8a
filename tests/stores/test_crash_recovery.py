"""kill -9 at random points of idempotent processing: nothing lost, nothing completed repeated.

A worker process handles 20 events; for each it claims the key, performs a side effect (a row in
a separate SQLite table, tagged with the worker's run number), and completes the record with the
run number as result. It reports each step through a pipe, and the parent SIGKILLs it after a
random number of steps -- before a claim, after it, after the side effect, after the completion.
The next worker runs with its clock moved past the lease, so it takes over records a dead worker
left in progress. A final worker is left to finish. Then:

* every event's side effect happened (nothing lost), and its record is completed;
* no side effect happened in a run later than the run that completed the event (a completed
  record is never worked again);
* the result stored is the run that did the completing side effect.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from store_services import store_url

from stormproof import stores
from stormproof.events.idempotency import Idempotency, IdempotencyConfig
from stormproof.stores.base import RecordStatus

EVENTS = 20
LEASE = 30.0


def _worker(url: str, effects: str, run: int, pipe: Connection) -> None:
    store = stores.open(url)
    offset = run * 2 * LEASE  # each run starts after the previous runs' leases have lapsed
    engine = Idempotency(store, IdempotencyConfig(lease=LEASE), clock=lambda: time.time() + offset)
    side = sqlite3.connect(effects, timeout=30.0, isolation_level=None)

    def handle(event: int) -> int:
        pipe.send(("claimed", event))
        side.execute("INSERT INTO effects (event, run) VALUES (?, ?)", (event, run))
        pipe.send(("effect", event))
        return run

    for event in range(EVENTS):
        engine.run(f"e{event}", {"e": event}, handle, event)
        pipe.send(("completed", event))
    pipe.send(("done", run))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_nine_at_random_points_loses_nothing_and_repeats_nothing_completed(
    backend: str, tmp_path: Path
) -> None:
    url = store_url(backend, tmp_path)
    store = stores.open(url)
    store.init()
    effects = str(tmp_path / "effects.db")
    with sqlite3.connect(effects) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE effects (event INTEGER, run INTEGER)")
    context = multiprocessing.get_context("spawn")
    rng = random.Random(7)
    kills = 0
    try:
        for run in range(1, 12):
            parent, child = context.Pipe()
            worker = context.Process(target=_worker, args=(url, effects, run, child))
            worker.start()
            kill_after = rng.randint(1, 12) if run < 11 else None
            steps = 0
            finished = False
            while True:
                if not parent.poll(60):
                    pytest.fail(f"run {run}: the worker stopped reporting")
                kind, _ = parent.recv()
                steps += 1
                if kind == "done":
                    finished = True
                    break
                if kill_after is not None and steps >= kill_after:
                    os.kill(worker.pid or 0, signal.SIGKILL)
                    kills += 1
                    break
            worker.join(30)
            if finished:
                break
        assert kills >= 5  # the test did crash workers at many points
        with sqlite3.connect(effects) as conn:
            rows = conn.execute("SELECT event, run FROM effects").fetchall()
        by_event: dict[int, list[int]] = {}
        for event, run in rows:
            by_event.setdefault(event, []).append(run)
        assert sorted(by_event) == list(range(EVENTS))  # nothing lost
        for event in range(EVENTS):
            record = store.get(f"e{event}")
            assert record is not None and record.status is RecordStatus.COMPLETED
            completed_by = int(record.result or "0")
            assert completed_by in by_event[event]  # the stored result is a real side effect's
            assert max(by_event[event]) == completed_by  # nothing ran after completion
    finally:
        drop = getattr(store, "drop", None)
        if drop is not None:
            drop()
        store.close()
