"""The durable engine driving ASL state machines, on a manual clock (nothing sleeps)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_services import store_url

from stormproof.clock import ManualClock
from stormproof.errors import ConfigError
from stormproof.events.queue import open_queue
from stormproof.workflows.asl.errors import AslValidationError
from stormproof.workflows.asl.local import TaskRegistry
from stormproof.workflows.durable import current_step
from stormproof.workflows.engine import Engine, EngineConfig
from stormproof.workflows.store import ExecutionAlreadyExists, ExecutionStatus, open_store

T0 = 1_700_000_000.0
BOOKING = json.loads(
    (Path(__file__).parents[2] / "examples" / "travel_booking.asl.json").read_text()
)


class Tasks:
    """Travel tasks whose behaviour a test switches, recording every call with its attempt."""

    def __init__(self) -> None:
        self.registry = TaskRegistry()
        self.calls: list[tuple[str, str]] = []
        self.seat_failures = 0
        for name in ("Reserve-Flight", "Allocate-Seat", "Refund-Flight", "echo"):
            self.registry.register(name, self._make(name))

    def _make(self, name: str) -> Any:
        def task(event: Any) -> Any:
            info = current_step()
            self.calls.append((name, info.attempt_id if info else "?"))
            if name == "Allocate-Seat" and self.seat_failures:
                self.seat_failures -= 1
                raise RuntimeError("no seat")
            return {"Reserve-Flight": "F1", "Allocate-Seat": "12A"}.get(name, event)

        return task


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(str(request.param), tmp_path).replace("sp_test_", "sp_wfe_")


@pytest.fixture
def tasks() -> Tasks:
    return Tasks()


@pytest.fixture
def engine(url: str, tasks: Tasks) -> Iterator[Engine]:
    store = open_store(url)
    store.init()
    queue_url = url.replace("sp_wfe_", "sp_wfq_") if "table=" in url else url
    dlq = open_queue(queue_url)
    dlq.init()
    yield Engine(store, tasks=tasks.registry, clock=ManualClock(T0), dlq=dlq)
    store.drop()
    store.close()
    drop = getattr(dlq, "drop", None)
    if drop is not None and "table=" in url:
        drop()
    dlq.close()


def types(engine: Engine, name: str) -> list[str]:
    return [e.type for e in engine.history(name)]


def test_booking_succeeds_and_the_history_tells_every_transition(engine: Engine) -> None:
    engine.start_machine(BOOKING, {"trip": 1}, name="ok")
    done = engine.run("ok")
    assert done.status is ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "") == {"trip": 1, "flight": "F1", "seat": "12A"}
    assert types(engine, "ok") == [
        "ExecutionStarted",
        "StateEntered",
        "TaskScheduled",
        "TaskSucceeded",
        "StateExited",
        "StateEntered",
        "TaskScheduled",
        "TaskSucceeded",
        "StateExited",
        "StateEntered",
        "StateExited",
        "ExecutionSucceeded",
    ]
    seqs = [e.seq for e in engine.history("ok")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_three_retries_one_second_apart_then_refund_and_dead_letter(
    engine: Engine, tasks: Tasks
) -> None:
    tasks.seat_failures = 99
    engine.start_machine(BOOKING, {"trip": 2}, name="sold-out")
    done = engine.run("sold-out")
    assert done.status is ExecutionStatus.FAILED and done.error == "BookingFailed"
    assert [c[0] for c in tasks.calls] == ["Reserve-Flight"] + ["Allocate-Seat"] * 4 + [
        "Refund-Flight"
    ]
    history = engine.history("sold-out")
    retries = [e for e in history if e.type == "RetryScheduled"]
    assert [e.details["delay"] for e in retries] == [1.0, 1.0, 1.0]
    assert [e.details["due"] - T0 for e in retries] == [1.0, 2.0, 3.0]  # exact, no real time
    assert [e.details["attempt"] for e in history if e.type == "TaskFailed"] == [1, 2, 3, 4]
    assert engine.clock.now() == T0 + 3.0
    assert engine.dlq is not None
    (message,) = engine.dlq.peek(engine.config.dlq_queue, 10)
    body = json.loads(message.body)
    assert body["execution"] == "sold-out" and body["error"] == "BookingFailed"
    assert body["cause"].startswith("the seat could not be allocated")
    assert body["history"][-1]["type"] == "ExecutionFailed"
    assert [h["type"] for h in body["history"][:-1]] == types(engine, "sold-out")[:-1]
    assert message.attributes["execution"] == "sold-out"


def test_a_three_day_wait_is_a_timer_and_takes_no_real_time(engine: Engine) -> None:
    machine = {
        "StartAt": "Hold",
        "States": {
            "Hold": {"Type": "Wait", "Seconds": 259200, "Next": "Go"},
            "Go": {"Type": "Task", "Resource": "echo", "End": True},
        },
    }
    engine.start_machine(machine, {"x": 1}, name="wait")
    engine.run_due()
    waiting = engine.describe("wait")
    assert waiting.status is ExecutionStatus.RUNNING and waiting.wake_at == T0 + 259200
    assert engine.run_due() == 0  # not due yet
    done = engine.run("wait")
    assert done.status is ExecutionStatus.SUCCEEDED and engine.clock.now() == T0 + 259200
    assert "WaitStarted" in types(engine, "wait") and "WaitEnded" in types(engine, "wait")


def test_execution_names_are_idempotent(engine: Engine) -> None:
    first = engine.start_machine(BOOKING, {"trip": 3}, name="same")
    again = engine.start_machine(BOOKING, {"trip": 3}, name="same")
    assert again.name == first.name and again.started_at == first.started_at
    with pytest.raises(ExecutionAlreadyExists):
        engine.start_machine(BOOKING, {"trip": 4}, name="same")
    assert types(engine, "same") == ["ExecutionStarted"]


def test_invalid_definitions_are_refused_at_start(engine: Engine) -> None:
    with pytest.raises(AslValidationError, match="Nope"):
        engine.start_machine(
            {"StartAt": "Nope", "States": {"A": {"Type": "Succeed"}}}, {}, name="bad"
        )
    assert engine.store.get("bad") is None


def test_redrive_restarts_from_the_failed_state_with_fresh_retries(
    engine: Engine, tasks: Tasks
) -> None:
    machine = {
        "StartAt": "Reserve",
        "States": {
            "Reserve": {
                "Type": "Task",
                "Resource": "Reserve-Flight",
                "ResultPath": "$.f",
                "Next": "Seat",
            },
            "Seat": {
                "Type": "Task",
                "Resource": "Allocate-Seat",
                "ResultPath": "$.s",
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}],
                "End": True,
            },
        },
    }
    tasks.seat_failures = 2
    engine.start_machine(machine, {}, name="r")
    failed = engine.run("r")
    assert failed.status is ExecutionStatus.FAILED and failed.error == "RuntimeError"
    tasks.seat_failures = 1  # still flaky, but the fresh retrier absorbs one failure
    assert engine.redrive("r").status is ExecutionStatus.RUNNING
    done = engine.run("r")
    assert done.status is ExecutionStatus.SUCCEEDED
    assert [c[0] for c in tasks.calls].count("Reserve-Flight") == 1  # not repeated
    assert "ExecutionRedriven" in types(engine, "r")
    with pytest.raises(ConfigError, match="only FAILED"):
        engine.redrive("r")


def test_a_fail_state_is_not_redriven(engine: Engine, tasks: Tasks) -> None:
    tasks.seat_failures = 99
    engine.start_machine(BOOKING, {}, name="f")
    engine.run("f")
    with pytest.raises(ConfigError, match="Fail state"):
        engine.redrive("f")


def test_redrive_requests_from_the_queue(engine: Engine, tasks: Tasks) -> None:
    machine = {
        "StartAt": "S",
        "States": {"S": {"Type": "Task", "Resource": "Allocate-Seat", "End": True}},
    }
    tasks.seat_failures = 1
    engine.start_machine(machine, {}, name="q")
    assert engine.run("q").status is ExecutionStatus.FAILED
    assert engine.dlq is not None
    moved = engine.dlq.move(
        engine.config.dlq_queue, engine.config.redrive_queue, 10, engine.clock.now()
    )
    assert len(moved) == 1
    assert engine.process_redrive_requests() == 1
    assert engine.run("q").status is ExecutionStatus.SUCCEEDED


def test_parallel_and_map_branches_are_child_executions(engine: Engine, tasks: Tasks) -> None:
    machine = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "A",
                        "States": {
                            "A": {"Type": "Task", "Resource": "Reserve-Flight", "End": True}
                        },
                    },
                    {
                        "StartAt": "B",
                        "States": {
                            "B": {"Type": "Wait", "Seconds": 60, "Next": "C"},
                            "C": {"Type": "Pass", "Result": "c", "End": True},
                        },
                    },
                ],
                "ResultPath": "$.both",
                "Next": "Each",
            },
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 2,
                "Iterator": {
                    "StartAt": "E",
                    "States": {"E": {"Type": "Task", "Resource": "echo", "End": True}},
                },
                "ResultPath": "$.each",
                "End": True,
            },
        },
    }
    engine.start_machine(machine, {"items": [1, 2, 3]}, name="p")
    done = engine.run("p")
    assert done.status is ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "") == {
        "items": [1, 2, 3],
        "both": ["F1", "c"],
        "each": [1, 2, 3],
    }
    children = engine.store.executions(parent="p")
    assert len(children) == 5 and all(c.status is ExecutionStatus.SUCCEEDED for c in children)
    assert engine.clock.now() == T0 + 60


def test_a_failed_branch_fails_the_parallel_state(engine: Engine, tasks: Tasks) -> None:
    tasks.seat_failures = 99
    machine = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "S",
                        "States": {"S": {"Type": "Task", "Resource": "Allocate-Seat", "End": True}},
                    }
                ],
            }
        },
    }
    engine.start_machine(machine, {}, name="pf")
    done = engine.run("pf")
    assert done.status is ExecutionStatus.FAILED and done.error == "RuntimeError"
    assert engine.dlq is not None
    assert len(engine.dlq.peek(engine.config.dlq_queue, 10)) == 1  # the parent only


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="lease"):
        EngineConfig(lease=0)
    with pytest.raises(ConfigError, match="redrive_queue"):
        EngineConfig(dlq_queue="x", redrive_queue="x")


def test_task_timeout_and_heartbeat_surface_as_states_timeout(engine: Engine) -> None:
    slow = TaskRegistry()

    def sleepy(event: Any, ctx: Any) -> str:
        ctx.sleep(event["for"])  # moves the manual clock; checks the limits
        return "late"

    slow.register("sleepy", sleepy)
    engine.tasks = slow
    machine = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "sleepy",
                "TimeoutSeconds": 10,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Late"}],
                "End": True,
            },
            "Late": {"Type": "Pass", "Result": "caught", "End": True},
        },
    }
    engine.start_machine(machine, {"for": 11}, name="slow")
    assert engine.output(engine.run("slow").name) == "caught"
    failed = [e for e in engine.history("slow") if e.type == "TaskFailed"]
    assert failed[0].details["error"] == "States.Timeout"
    engine.start_machine(machine, {"for": 9}, name="quick")
    assert engine.output(engine.run("quick").name) == "late"


def test_the_execution_timeout_fails_a_waiting_execution(engine: Engine) -> None:
    machine = {
        "TimeoutSeconds": 100,
        "StartAt": "W",
        "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}},
    }
    engine.start_machine(machine, {}, name="late")
    done = engine.run("late")
    assert done.status is ExecutionStatus.FAILED and done.error == "States.Timeout"
    assert engine.clock.now() == T0 + 100  # woken at the deadline, not at the wait's end


def test_nested_branches_resolve_their_definitions_through_their_parents(engine: Engine) -> None:
    inner = {"StartAt": "I", "States": {"I": {"Type": "Task", "Resource": "echo", "End": True}}}
    machine = {
        "StartAt": "Outer",
        "States": {
            "Outer": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "Inner",
                        "States": {"Inner": {"Type": "Map", "End": True, "Iterator": inner}},
                    },
                ],
            }
        },
    }
    engine.start_machine(machine, [1, 2], name="nest")
    engine.run_due()  # the parent starts its branch; the branch is left for another worker
    fresh = Engine(engine.store, tasks=engine.tasks, clock=engine.clock)  # empty caches
    done = fresh.run("nest")
    assert done.status is ExecutionStatus.SUCCEEDED and json.loads(done.output or "") == [[1, 2]]
    (child,) = engine.store.executions(parent="nest")
    assert len(engine.store.executions(parent=child.name)) == 2
