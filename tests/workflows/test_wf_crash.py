"""kill -9 the engine at random points: every execution ends as in an uninterrupted run.

Each trial starts six bookings (three ASL state machines, three Python sagas; by trip number
one succeeds at once, one after two failed Allocate attempts, one never gets a seat and is
compensated) in a fresh SQLite store, then runs ``wf_crash_child.py`` as a real child process
and SIGKILLs it after a random number of side effects (seeded), three times, before a last
child is left to finish. The reference is the same bookings run uninterrupted in-process.

Checked for every trial:

* every execution ends in the reference's status, output and error;
* every completed task/step attempt (its TaskSucceeded/TaskFailed/StepSucceeded/StepFailed in
  the history names the run that completed it) made its side effect exactly once in that run,
  and no side effect of that attempt happened in a later run (nothing completed is repeated);
* the other side effects belong to interrupted attempts: no outcome was ever recorded for them,
  and they come from earlier runs than the attempt's completion;
* every compensated booking refunded its flight (compensation completed).
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import wf_crash_child as child

CHILD = str(Path(child.__file__).resolve())
TRIPS = 6
TRIALS = 10
KILLS_PER_TRIAL = 3


def effects_for(db: str) -> str:
    """A scratch effects file for engines opened only to read the store."""
    return db + ".inspect-effects"


def start_all(db: str, effects: str) -> None:
    engine = child.engine(db, effects, 0, announce=False)
    for n in range(TRIPS):
        trip = {"n": n}
        if n % 2 == 0:
            engine.start_machine(json.dumps(child.MACHINE), trip, name=f"asl-{n}")
        else:
            engine.start("book", trip, name=f"py-{n}")
    engine.close()


def outcomes(db: str) -> dict[str, tuple[str, Any, str | None]]:
    engine = child.engine(db, effects_for(db), 0, announce=False)
    found = {
        e.name: (e.status.value, json.loads(e.output or "null"), e.error)
        for e in engine.store.executions(limit=100)
    }
    engine.close()
    return found


def reference(tmp: Path) -> dict[str, tuple[str, Any, str | None]]:
    db, effects = str(tmp / "reference.db"), str(tmp / "reference-effects.db")
    start_all(db, effects)
    engine = child.engine(db, effects, 1, announce=False)
    engine.run_until_idle()
    engine.close()
    return outcomes(db)


def run_child(db: str, effects: str, run: int, kill_after: int | None) -> bool:
    """Run one worker; SIGKILL it after ``kill_after`` side effects. True if it finished."""
    process = subprocess.Popen(
        [sys.executable, CHILD, db, effects, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    seen = 0
    finished = False
    try:
        for line in process.stdout:
            if line.startswith("done"):
                finished = True
                break
            seen += 1
            if kill_after is not None and seen >= kill_after:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.stdout.close()
        process.wait(timeout=60)
    return finished


def check_effects(db: str, effects: str) -> int:
    """Assert the side-effect rules; returns how many interrupted attempts were seen."""
    engine = child.engine(db, effects_for(db), 0, announce=False)
    completed: dict[tuple[str, int, int], int] = {}  # (execution, step, attempt) -> run
    for execution in engine.store.executions(limit=100):
        for event in engine.history(execution.name):
            d = event.details
            if event.type in ("TaskSucceeded", "TaskFailed"):
                key = (
                    execution.name,
                    int(event_visit(engine, execution.name, event.seq)),
                    d["attempt"],
                )
            elif event.type.endswith(("StepSucceeded", "StepFailed")):
                key = (execution.name, int(d["step"]), int(d["attempt"]))
            else:
                continue
            assert key not in completed, f"outcome of {key} recorded twice"
            completed[key] = int(d["run"])
    engine.close()
    with sqlite3.connect(effects) as conn:
        rows = conn.execute("SELECT execution, step, name, attempt, run FROM effects").fetchall()
    interrupted = 0
    by_attempt: dict[tuple[str, int, int], list[int]] = {}
    for execution, step_id, _name, attempt, run in rows:
        by_attempt.setdefault((execution, step_id, attempt), []).append(run)
    for key, runs in by_attempt.items():
        done_by = completed.get(key)
        if done_by is None:
            interrupted += len(runs)  # an attempt no run completed: all were killed
            continue
        assert runs.count(done_by) == 1, f"{key}: side effect of the completing run {runs}"
        assert max(runs) == done_by, f"{key}: repeated after completion (runs {runs})"
        interrupted += len(runs) - 1
    for key in completed:
        assert key in by_attempt, f"{key} completed without its side effect"
    return interrupted


def event_visit(engine: Any, name: str, seq: int) -> int:
    """The state visit of a task event: the step id its attempt ids carry."""
    cache = engine.__dict__.setdefault("_visits", {})
    if name not in cache:
        visits: dict[int, int] = {}
        visit = -1
        for event in engine.store.history(name):
            if event.type == "StateEntered":
                visit += 1
            visits[event.seq] = visit
        cache[name] = visits
    return int(cache[name][seq])


def test_kill_nine_at_random_points_resumes_every_execution(tmp_path: Path) -> None:
    expected = reference(tmp_path)
    assert (
        sorted(status for status, _, _ in expected.values()) == ["FAILED"] * 2 + ["SUCCEEDED"] * 4
    )
    rng = random.Random(20261202)
    kills = interrupted = 0
    for trial in range(TRIALS):
        db, effects = str(tmp_path / f"t{trial}.db"), str(tmp_path / f"t{trial}-effects.db")
        start_all(db, effects)
        run = 1
        for _ in range(KILLS_PER_TRIAL):
            if run_child(db, effects, run, kill_after=rng.randint(1, 14)):
                break
            kills += 1
            run += 1
        assert run_child(db, effects, run + 1, kill_after=None)
        assert outcomes(db) == expected, f"trial {trial}"
        interrupted += check_effects(db, effects)
        with sqlite3.connect(effects) as conn:
            refunds = conn.execute(
                "SELECT DISTINCT execution FROM effects WHERE name = 'refund'"
            ).fetchall()
        failed = {name for name, (status, _, _) in expected.items() if status == "FAILED"}
        assert {r[0] for r in refunds} == failed  # compensation completed, and only there
    assert kills >= TRIALS * 2  # the children really were killed, at many points
    assert interrupted >= 1, (kills, interrupted)  # and some kills did land inside a task
    print(f"kills={kills} interrupted={interrupted}")
