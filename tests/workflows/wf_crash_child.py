"""A worker the crash tests start as a child process (and import for the reference run).

    python wf_crash_child.py DB EFFECTS RUN

Drives every due execution in the SQLite workflow store DB to its end on a manual clock that
starts at ``T0 + RUN * RUN_SPACING`` (so each restart is past the dead worker's leases and
every timer is instantly due). Each task or step writes its side effect to the EFFECTS SQLite
file -- tagged with its attempt id -- and then prints one line, which the parent counts to pick
the moment it sends SIGKILL.

Kept out of ``conftest.py``: a spawned child imports this file, never a conftest.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

from stormproof.clock import ManualClock
from stormproof.policies import presets
from stormproof.workflows.asl.local import TaskRegistry
from stormproof.workflows.durable import Workflows, current_step, step
from stormproof.workflows.engine import Engine, EngineConfig
from stormproof.workflows.saga import saga

T0 = 1_700_000_000.0
RUN_SPACING = 1_000_000.0  # far beyond any wait, retry delay or lease of a run
LEASE = 60.0

MACHINE = {
    "StartAt": "Reserve",
    "States": {
        "Reserve": {
            "Type": "Task",
            "Resource": "reserve",
            "ResultPath": "$.flight",
            "Next": "Hold",
        },
        "Hold": {"Type": "Wait", "Seconds": 259200, "Next": "Allocate"},
        "Allocate": {
            "Type": "Task",
            "Resource": "allocate",
            "ResultPath": "$.seat",
            "Retry": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 1.0,
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Refund"}],
            "Next": "Confirm",
        },
        "Confirm": {"Type": "Pass", "Result": "confirmed", "ResultPath": "$.state", "End": True},
        "Refund": {
            "Type": "Task",
            "Resource": "refund",
            "ResultPath": "$.refund",
            "Next": "Failed",
        },
        "Failed": {"Type": "Fail", "Error": "BookingFailed", "Cause": "no seat"},
    },
}


class Effects:
    """Side effects, recorded in their own database with the attempt that made them."""

    def __init__(self, path: str, announce: bool) -> None:
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS effects (execution TEXT, step INTEGER, name TEXT,"
            " attempt INTEGER, run INTEGER)"
        )
        self.announce = announce

    def record(self, name: str) -> None:
        info = current_step()
        assert info is not None
        self.conn.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?, ?)",
            (info.execution, info.step_id, name, info.attempt, info.run),
        )
        if self.announce:
            print(f"effect {info.attempt_id} {name}", flush=True)


def failures(trip: dict[str, Any]) -> int:
    """How many times Allocate fails for this trip: 0, 2 (then succeeds) or always."""
    return (0, 2, 99)[int(trip["n"]) % 3]


def build(effects: Effects) -> tuple[TaskRegistry, Workflows]:
    tasks = TaskRegistry()

    def reserve(trip: dict[str, Any]) -> str:
        effects.record("reserve")
        return f"F{trip['n']}"

    def allocate(trip: dict[str, Any]) -> str:
        effects.record("allocate")
        info = current_step()
        assert info is not None
        if info.attempt <= failures(trip):
            raise RuntimeError("no seat")
        return "12A"

    def refund(trip: dict[str, Any]) -> str:
        effects.record("refund")
        return "refunded"

    tasks.register("reserve", reserve)
    tasks.register("allocate", allocate)
    tasks.register("refund", refund)

    app = Workflows()
    refund_step = step(name="refund", retry=presets.step_functions(1.0, 3, 1.0, rng=1))(refund)
    reserve_step = step(name="reserve", compensate=refund_step)(reserve)
    allocate_step = step(name="allocate", retry=presets.step_functions(1.0, 3, 1.0, rng=1))(
        allocate
    )

    @app.workflow("book")
    def book(trip: dict[str, Any]) -> dict[str, Any]:
        with saga():
            flight = reserve_step(trip)
            seat = allocate_step(trip)
        return {"flight": flight, "seat": seat}

    return tasks, app


def engine(db: str, effects_path: str, run: int, announce: bool) -> Engine:
    tasks, app = build(Effects(effects_path, announce))
    clock = ManualClock(T0 + run * RUN_SPACING)
    return Engine.open(
        f"sqlite:///{db}", tasks=tasks, workflows=app, clock=clock, config=EngineConfig(lease=LEASE)
    )


def main() -> None:
    db, effects_path, run = sys.argv[1], sys.argv[2], int(sys.argv[3])
    worker = engine(db, effects_path, run, announce=True)
    worker.run_until_idle()
    print("done", flush=True)


if __name__ == "__main__":
    main()
