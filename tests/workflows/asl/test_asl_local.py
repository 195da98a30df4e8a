"""The reference driver: task registry, the travel-booking saga, timeouts, branches on the clock."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from stormproof.clock import ManualClock
from stormproof.errors import ConfigError
from stormproof.workflows.asl import (
    Context,
    RunBranches,
    StatesError,
    parse,
    step_from_json,
    step_to_json,
)
from stormproof.workflows.asl.local import TaskContext, TaskRegistry, run_local

BOOKING = Path(__file__).with_name("travel_booking.asl.json")


def booking_tasks(seat_failures: int) -> tuple[TaskRegistry, list[tuple[str, float]]]:
    calls: list[tuple[str, float]] = []
    tasks = TaskRegistry()
    clock_box: dict[str, Any] = {}

    @tasks.task("arn:aws:lambda:us-east-1:123456789012:function:Reserve-Flight")
    def reserve(event: Any, ctx: TaskContext) -> dict[str, str]:
        calls.append(("Reserve-Flight", ctx.now()))
        return {"reference": "FL-1"}

    @tasks.task("Allocate-Seat")  # a plain name serves the ARN's last segment
    def allocate(event: Any, ctx: TaskContext) -> dict[str, str]:
        calls.append(("Allocate-Seat", ctx.now()))
        assert event == {"booking": 42, "flight": "FL-1"}
        if ctx.attempt <= seat_failures:
            raise RuntimeError("no seat left")
        return {"seat": "12A"}

    @tasks.task("Refund-Flight")
    def refund(event: Any, ctx: TaskContext) -> dict[str, bool]:
        calls.append(("Refund-Flight", ctx.now()))
        assert event == {"flight": "FL-1", "reason": "RuntimeError"}
        return {"refunded": True}

    clock_box["calls"] = calls
    return tasks, calls


def test_travel_booking_refunds_after_three_retries_one_second_apart() -> None:
    machine = parse(BOOKING.read_text())
    tasks, calls = booking_tasks(seat_failures=10)
    clock = ManualClock()
    result = run_local(machine, {"booking": 42}, tasks, clock=clock, rng=random.Random(1))
    assert result.status == "FAILED"
    assert (result.error, result.cause) == (
        "BookingFailed",
        "The seat could not be allocated; the flight was refunded.",
    )
    # 1 attempt + 3 retries of Allocate-Seat at 1 s intervals, then the compensation.
    assert calls == [
        ("Reserve-Flight", 0.0),
        ("Allocate-Seat", 0.0),
        ("Allocate-Seat", 1.0),
        ("Allocate-Seat", 2.0),
        ("Allocate-Seat", 3.0),
        ("Refund-Flight", 3.0),
    ]
    assert clock.sleeps == [1.0, 1.0, 1.0]
    exits = [e for e in result.events("StateExited") if e.state == "Allocate-Seat"]
    assert exits[0].details["next"] == "Refund-Flight"
    assert exits[0].details["error"] == "RuntimeError"


def test_travel_booking_succeeds_when_the_seat_comes_free_on_the_last_retry() -> None:
    machine = parse(BOOKING.read_text())
    tasks, calls = booking_tasks(seat_failures=3)
    result = run_local(machine, {"booking": 42}, tasks, rng=random.Random(1))
    assert result.succeeded
    assert result.output == {
        "booking": 42,
        "flight": {"reference": "FL-1"},
        "seat": {"seat": "12A"},
    }
    assert [name for name, _ in calls].count("Refund-Flight") == 0
    assert result.stopped_at == 3.0


def test_unknown_resource_is_named_before_anything_runs() -> None:
    machine = parse(BOOKING.read_text())
    tasks = TaskRegistry()
    tasks.register("Reserve-Flight", lambda event: {})
    with pytest.raises(ConfigError) as info:
        run_local(machine, {}, tasks)
    assert "Allocate-Seat" in str(info.value)
    assert "Refund-Flight" in str(info.value)
    assert tasks.missing(machine) == [
        "arn:aws:lambda:us-east-1:123456789012:function:Allocate-Seat",
        "arn:aws:lambda:us-east-1:123456789012:function:Refund-Flight",
    ]


def test_registry_rejects_bad_registrations_and_lists_names() -> None:
    tasks = TaskRegistry()
    with pytest.raises(ConfigError):
        tasks.register("", lambda event: event)
    with pytest.raises(ConfigError):
        tasks.register("x", "not callable")  # type: ignore[arg-type]
    tasks.register("b", lambda event: event)
    tasks.register("a", lambda event: event)
    assert list(tasks) == ["a", "b"] and len(tasks) == 2
    assert "arn:x:a" in tasks and "c" not in tasks


def one_task(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    state = {"Type": "Task", "Resource": "work", "End": True}
    state.update(extra or {})
    return {"StartAt": "T", "States": {"T": state}}


def test_states_error_names_the_error_and_async_tasks_run() -> None:
    tasks = TaskRegistry()

    @tasks.task("work")
    def work(event: Any) -> Any:
        raise StatesError("Custom.Error", "it broke")

    result = run_local(parse(one_task()), {}, tasks)
    assert (result.error, result.cause) == ("Custom.Error", "it broke")

    async_tasks = TaskRegistry()

    @async_tasks.task("work")
    async def work_async(event: Any) -> Any:
        return {"got": event}

    ok = run_local(parse(one_task()), {"a": 1}, async_tasks)
    assert ok.output == {"got": {"a": 1}}


def test_timeout_seconds_is_enforced_on_the_clock() -> None:
    tasks = TaskRegistry()

    @tasks.task("work")
    def slow(event: Any, ctx: TaskContext) -> str:
        ctx.sleep(3)  # within the 5 s limit
        ctx.sleep(3)  # now 6 s: the driver stops the task here
        return "never"

    machine = parse(one_task({"TimeoutSeconds": 5}))
    clock = ManualClock()
    result = run_local(machine, {}, tasks, clock=clock)
    assert result.error == "States.Timeout"
    assert clock.now() == 6.0


def test_heartbeat_expiry_surfaces_as_states_timeout_and_heartbeats_keep_it_alive() -> None:
    tasks = TaskRegistry()

    @tasks.task("work")
    def beating(event: Any, ctx: TaskContext) -> str:
        for _ in range(4):
            ctx.clock.sleep(2)
            ctx.heartbeat()
        return "done"

    ok = run_local(parse(one_task({"HeartbeatSeconds": 3, "TimeoutSeconds": 60})), {}, tasks)
    assert ok.output == "done"

    silent = TaskRegistry()

    @silent.task("work")
    def quiet(event: Any, ctx: TaskContext) -> str:
        ctx.clock.sleep(4)
        return "late"

    caught = one_task(
        {
            "HeartbeatSeconds": 3,
            "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "H"}],
            "End": None,
        }
    )
    del caught["States"]["T"]["End"]
    caught["States"]["T"]["Next"] = "Done"
    caught["States"]["H"] = {"Type": "Pass", "End": True}
    caught["States"]["Done"] = {"Type": "Succeed"}
    result = run_local(parse(caught), {}, silent)
    assert result.output == {
        "Error": "States.Timeout",
        "Cause": "no heartbeat for more than 3 s",
    }
    bare = run_local(parse(one_task({"HeartbeatSeconds": 3})), {}, silent)
    assert bare.error == "States.Timeout"


def test_execution_timeout_seconds_fails_a_long_wait() -> None:
    machine = parse(
        {
            "StartAt": "W",
            "TimeoutSeconds": 10,
            "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}},
        }
    )
    clock = ManualClock()
    result = run_local(machine, {}, clock=clock)
    assert result.error == "States.Timeout"
    assert clock.now() == 10.0


def test_a_three_day_wait_is_instant_on_the_manual_clock() -> None:
    machine = parse(
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 259200, "End": True}}}
    )
    clock = ManualClock()
    result = run_local(machine, {"x": 1}, clock=clock)
    assert result.output == {"x": 1}
    assert clock.sleeps == [259200.0]


def test_wait_timestamp_maps_onto_the_clock_with_start_epoch() -> None:
    machine = parse(
        {
            "StartAt": "W",
            "States": {"W": {"Type": "Wait", "Timestamp": "2024-01-01T00:01:00Z", "End": True}},
        }
    )
    start = 1704067200.0  # 2024-01-01T00:00:00Z
    clock = ManualClock()
    run_local(machine, {}, clock=clock, start_epoch=start)
    assert clock.now() == 60.0
    past = ManualClock()
    run_local(machine, {}, clock=past, start_epoch=start + 3600)
    assert past.now() == 0.0


def parallel_waits(concurrency: int | None) -> dict[str, Any]:
    if concurrency is None:
        return {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [
                        {
                            "StartAt": f"W{i}",
                            "States": {f"W{i}": {"Type": "Wait", "Seconds": s, "End": True}},
                        }
                        for i, s in enumerate((10, 30, 20))
                    ],
                }
            },
        }
    return {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "MaxConcurrency": concurrency,
                "ItemsPath": "$.waits",
                "ItemProcessor": {
                    "StartAt": "W",
                    "States": {"W": {"Type": "Wait", "SecondsPath": "$", "End": True}},
                },
                "End": True,
            }
        },
    }


def test_parallel_branches_take_the_time_of_the_slowest_branch() -> None:
    clock = ManualClock()
    result = run_local(parse(parallel_waits(None)), {"a": 1}, clock=clock)
    assert result.output == [{"a": 1}, {"a": 1}, {"a": 1}]
    assert clock.now() == 30.0


@pytest.mark.parametrize(("concurrency", "elapsed"), [(0, 30.0), (1, 60.0), (2, 40.0)])
def test_map_max_concurrency_shapes_the_elapsed_time(concurrency: int, elapsed: float) -> None:
    clock = ManualClock()
    result = run_local(parse(parallel_waits(concurrency)), {"waits": [10, 20, 30]}, clock=clock)
    assert result.output == [10, 20, 30]
    assert clock.now() == elapsed


def test_max_steps_guards_against_endless_loops() -> None:
    machine = parse(
        {
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Next": "B"},
                "B": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.stop", "IsPresent": True, "Next": "End"}],
                    "Default": "A",
                },
                "End": {"Type": "Succeed"},
            },
        }
    )
    with pytest.raises(ConfigError):
        run_local(machine, {}, max_steps=50)


def test_steps_round_trip_through_json() -> None:
    machine = parse(parallel_waits(2))
    step = machine.enter("M", {"waits": [1, 2]}, Context())
    assert isinstance(step, RunBranches)
    data = json.loads(json.dumps(step_to_json(step)))
    again = step_from_json(data, machine)
    assert again == step
    assert again.branches[1].machine is step.branches[1].machine
    with pytest.raises(ConfigError):
        step_from_json(data)
    with pytest.raises(ConfigError):
        step_from_json({"type": "Nope"})
    booking = parse(BOOKING.read_text())
    failed = booking.task_failed(
        "Allocate-Seat",
        {"booking": 1, "flight": {"reference": "F"}},
        "E",
        "c",
        [1],
        Context(),
        random.Random(0),
    )
    assert step_from_json(json.loads(json.dumps(step_to_json(failed)))) == failed
