"""Python-native durable workflows and sagas on a manual clock (SQLite; nothing sleeps)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_services import store_url

from stormproof.clock import ManualClock
from stormproof.errors import ConfigError
from stormproof.events.queue import open_queue
from stormproof.policies import presets
from stormproof.policies.backoff import Constant
from stormproof.policies.retry import RetryPolicy
from stormproof.workflows.durable import (
    StepError,
    Workflows,
    current_step,
    now,
    sleep,
    step,
)
from stormproof.workflows.engine import Engine
from stormproof.workflows.saga import add_compensation, saga
from stormproof.workflows.store import ExecutionStatus, open_store

T0 = 1_700_000_000.0


class Crash(BaseException):
    """Stands for the process dying: unwinds through everything, commits nothing more."""


class Trip:
    """A travel saga whose failures a test scripts; records every side effect."""

    def __init__(self) -> None:
        self.app = Workflows()
        self.log: list[str] = []
        self.seat_failures = 0
        self.refund_failures = 0
        self.crash_at: str | None = None

        @step(name="refund", retry=RetryPolicy(max_attempts=2, backoff=Constant(5.0)))
        def refund(flight: dict[str, Any]) -> str:
            self._effect("refund")
            if self.refund_failures:
                self.refund_failures -= 1
                raise ConnectionError("refund service down")
            return f"refunded {flight['id']}"

        @step(name="reserve", compensate=refund)
        def reserve(trip: dict[str, Any]) -> dict[str, Any]:
            self._effect("reserve")
            return {"id": f"F{trip['n']}"}

        @step(name="hotel")
        def hotel(trip: dict[str, Any]) -> str:
            self._effect("hotel")
            return "H1"

        @step(name="allocate", retry=presets.step_functions(1.0, 3, 1.0, rng=1))
        def allocate(flight: dict[str, Any]) -> str:
            self._effect("allocate")
            if self.seat_failures:
                self.seat_failures -= 1
                raise LookupError("no seat")
            return "12A"

        def cancel_hotel(booking: str) -> None:
            self._effect("cancel_hotel")

        @self.app.workflow("book")
        def book(trip: dict[str, Any]) -> dict[str, Any]:
            with saga():
                flight = reserve(trip)
                room = hotel(trip)
                add_compensation(cancel_hotel, room)
                sleep(3 * 24 * 3600)
                seat = allocate(flight)
            return {"flight": flight, "room": room, "seat": seat, "at": now()}

    def _effect(self, name: str) -> None:
        info = current_step()
        assert info is not None
        self.log.append(f"{name}#{info.attempt}")
        if self.crash_at == name:
            self.crash_at = None
            raise Crash


@pytest.fixture
def trip() -> Trip:
    return Trip()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, trip: Trip) -> Iterator[Engine]:
    url = store_url(str(request.param), tmp_path).replace("sp_test_", "sp_wfd_")
    store = open_store(url)
    store.init()
    dlq = open_queue(url.replace("sp_wfd_", "sp_wfdq_"))
    dlq.init()
    yield Engine(store, workflows=trip.app, clock=ManualClock(T0), dlq=dlq)
    if request.param == "postgresql":
        store.drop()
        dlq.drop()  # type: ignore[attr-defined]
    store.close()
    dlq.close()


def types(engine: Engine, name: str) -> list[str]:
    return [e.type for e in engine.history(name)]


def test_steps_sleep_and_now_are_recorded(engine: Engine, trip: Trip) -> None:
    engine.start("book", {"n": 1}, name="b")
    done = engine.run("b")
    assert done.status is ExecutionStatus.SUCCEEDED
    out = json.loads(done.output or "")
    assert out == {"flight": {"id": "F1"}, "room": "H1", "seat": "12A", "at": T0 + 259200}
    assert trip.log == ["reserve#1", "hotel#1", "allocate#1"]
    assert types(engine, "b") == [
        "ExecutionStarted",
        "StepSucceeded",
        "StepSucceeded",
        "WaitStarted",
        "StepSucceeded",
        "ExecutionSucceeded",
    ]


def test_a_crash_resumes_without_repeating_completed_steps(engine: Engine, trip: Trip) -> None:
    trip.crash_at = "allocate"
    engine.start("book", {"n": 1}, name="c")
    with pytest.raises(Crash):
        engine.run("c")
    assert engine.describe("c").status is ExecutionStatus.RUNNING
    engine.clock.advance(engine.config.lease)  # type: ignore[attr-defined]  # lease lapses
    assert engine.run("c").status is ExecutionStatus.SUCCEEDED
    # reserve and hotel ran once; allocate's interrupted attempt ran again (at least once)
    assert trip.log == ["reserve#1", "hotel#1", "allocate#1", "allocate#1"]
    assert engine.describe("c").runs == 3


def test_retries_are_durable_timers_with_exact_delays(engine: Engine, trip: Trip) -> None:
    trip.seat_failures = 2
    engine.start("book", {"n": 2}, name="r")
    assert engine.run("r").status is ExecutionStatus.SUCCEEDED
    history = engine.history("r")
    assert [e.details["delay"] for e in history if e.type == "RetryScheduled"] == [1.0, 1.0]
    assert engine.clock.now() == T0 + 259200 + 2.0
    assert trip.log[-3:] == ["allocate#1", "allocate#2", "allocate#3"]


def test_saga_compensates_in_reverse_order_and_dead_letters(engine: Engine, trip: Trip) -> None:
    trip.seat_failures = 99
    engine.start("book", {"n": 3}, name="s")
    done = engine.run("s")
    assert done.status is ExecutionStatus.FAILED
    assert (done.error, done.cause) == ("LookupError", "no seat")
    assert trip.log[-2:] == ["cancel_hotel#1", "refund#1"]  # reverse order of registration
    assert types(engine, "s")[-6:] == [
        "StepFailed",
        "CompensationStarted",
        "CompensationStepSucceeded",
        "CompensationStepSucceeded",
        "CompensationSucceeded",
        "ExecutionFailed",
    ]
    assert types(engine, "s")[-1] == "ExecutionFailed"
    assert engine.dlq is not None
    (message,) = engine.dlq.peek(engine.config.dlq_queue, 5)
    assert json.loads(message.body)["error"] == "LookupError"
    with pytest.raises(ConfigError, match="compensated"):
        engine.redrive("s")


def test_a_crash_during_compensation_resumes_it(engine: Engine, trip: Trip) -> None:
    trip.seat_failures = 99
    trip.crash_at = "refund"
    engine.start("book", {"n": 4}, name="k")
    with pytest.raises(Crash):
        engine.run("k")
    engine.clock.advance(engine.config.lease)  # type: ignore[attr-defined]
    assert engine.run("k").status is ExecutionStatus.FAILED
    assert trip.log.count("cancel_hotel#1") == 1  # completed compensation not repeated
    assert trip.log[-2:] == ["refund#1", "refund#1"]  # the interrupted one ran again
    assert types(engine, "k").count("CompensationSucceeded") == 1


def test_failed_compensation_is_redriven_from_that_compensation(engine: Engine, trip: Trip) -> None:
    trip.seat_failures = 99
    trip.refund_failures = 2  # its policy allows 2 attempts: the compensation fails for good
    engine.start("book", {"n": 5}, name="f")
    failed = engine.run("f")
    assert failed.status is ExecutionStatus.FAILED and failed.error == "CompensationFailed"
    assert "ConnectionError" in (failed.cause or "")
    assert engine.history("f")[-2].type == "CompensationStepFailed"
    before = list(trip.log)
    engine.redrive("f")
    assert engine.run("f").status is ExecutionStatus.FAILED  # compensated now
    assert trip.log[len(before) :] == ["refund#1"]  # only the failed compensation ran again
    assert types(engine, "f")[-2:] == ["CompensationSucceeded", "ExecutionFailed"]


def test_redrive_reruns_the_failed_step_only(tmp_path: Path) -> None:
    app = Workflows()
    calls: list[str] = []
    broken = [True]

    @step
    def first(x: int) -> int:
        calls.append("first")
        return x + 1

    @step
    def second(x: int) -> int:
        calls.append("second")
        if broken[0]:
            raise ValueError("bad")
        return x * 10

    @app.workflow()
    def flow(x: int) -> int:
        return second(first(x))

    engine = Engine.open(f"sqlite:///{tmp_path / 'r.db'}", workflows=app, clock=ManualClock(T0))
    engine.start(flow, 1, name="x")
    assert engine.run("x").error == "ValueError"
    broken[0] = False
    engine.redrive("x")
    assert engine.output("x") is None
    engine.run("x")
    assert engine.output("x") == 20 and calls == ["first", "second", "second"]
    engine.close()


def test_step_errors_look_the_same_on_replay(tmp_path: Path) -> None:
    app = Workflows()
    seen: list[str] = []

    @step
    def boom() -> None:
        raise KeyError("k")

    @app.workflow()
    def flow(_: Any) -> str:
        try:
            boom()
        except StepError as error:
            seen.append(error.error)
        sleep(10)  # forces a replay: boom's failure comes from the record the second time
        return "handled"

    engine = Engine.open(f"sqlite:///{tmp_path / 'e.db'}", workflows=app, clock=ManualClock(T0))
    engine.start(flow, None, name="e")
    assert engine.output(engine.run("e").name) == "handled"
    assert seen == ["KeyError", "KeyError"]
    engine.close()


def test_a_changed_workflow_is_detected(tmp_path: Path) -> None:
    app = Workflows()
    version = [1]

    @step
    def a() -> int:
        return 1

    @step
    def b() -> int:
        return 2

    @app.workflow()
    def flow(_: Any) -> int:
        first = a() if version[0] == 1 else b()
        sleep(5)
        return first

    engine = Engine.open(f"sqlite:///{tmp_path / 'n.db'}", workflows=app, clock=ManualClock(T0))
    engine.start(flow, None, name="n")
    engine.run_due()
    version[0] = 2
    done = engine.run("n")
    assert done.status is ExecutionStatus.FAILED and done.error == "NonDeterministicWorkflow"
    engine.close()


def test_misuse_is_refused(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="sleep"):
        sleep(1)
    with pytest.raises(ConfigError, match="not registered"):
        engine.start("nope", {})
    with pytest.raises(ConfigError, match="retry"):
        step(retry=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="already registered"):
        engine.workflows.workflow("book")(lambda _: None)


def test_steps_outside_a_workflow_are_plain_calls() -> None:
    @step(retry=RetryPolicy(max_attempts=5))
    def double(x: int) -> int:
        assert current_step() is None  # not checkpointed: no step context
        return 2 * x

    assert double(21) == 42 and double.name.endswith("double")
    with pytest.raises(ConfigError, match="saga"), saga():
        pass


def test_a_changed_workflow_inside_a_saga_compensates_nothing(tmp_path: Path) -> None:
    app = Workflows()
    undone: list[int] = []
    version = [1]

    @step(compensate=lambda n: undone.append(n))
    def a() -> int:
        return 1

    @step
    def b() -> int:
        return 2

    @app.workflow()
    def flow(_: Any) -> int:
        with saga():
            first = a() if version[0] == 1 else b()
            sleep(5)
        return first

    engine = Engine.open(f"sqlite:///{tmp_path / 'd.db'}", workflows=app, clock=ManualClock(T0))
    engine.start(flow, None, name="d")
    engine.run_due()
    version[0] = 2
    assert engine.run("d").error == "NonDeterministicWorkflow"
    assert undone == [] and "CompensationStarted" not in types(engine, "d")
    engine.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    failures=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=5),
    compensable=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_saga_outcome_property(
    tmp_path: Path, failures: list[int], compensable: list[bool]
) -> None:
    """With 3 attempts per step, a step failing 3+ times fails the saga, and exactly the
    completed steps that have a compensation are undone, last first."""
    app = Workflows()
    log: list[str] = []
    left = list(failures)
    steps = []
    for i in range(len(failures)):

        def body(_: Any, i: int = i) -> int:
            log.append(f"do{i}")
            if left[i]:
                left[i] -= 1
                raise RuntimeError(f"step {i}")
            return i

        def undo(result: int) -> None:
            log.append(f"undo{result}")

        steps.append(
            step(
                name=f"s{i}",
                retry=RetryPolicy(max_attempts=3, backoff=Constant(1.0)),
                compensate=undo if compensable[i] else None,
            )(body)
        )

    @app.workflow("p")
    def flow(_: Any) -> list[int]:
        with saga():
            return [s(None) for s in steps]

    engine = Engine.open(
        f"sqlite:///{tmp_path / 'prop.db'}?table=p_{uuid.uuid4().hex[:12]}",
        workflows=app,
        clock=ManualClock(T0),
        dlq=False,
    )
    engine.start("p", None, name="x")
    done = engine.run("x")
    engine.close()
    first_bad = next((i for i, f in enumerate(failures) if f >= 3), None)
    if first_bad is None:
        assert done.status is ExecutionStatus.SUCCEEDED
        assert not any(entry.startswith("undo") for entry in log)
        return
    assert done.status is ExecutionStatus.FAILED and done.error == "RuntimeError"
    expected = [f"undo{i}" for i in reversed(range(first_bad)) if compensable[i]]
    assert [entry for entry in log if entry.startswith("undo")] == expected
    assert f"do{first_bad + 1}" not in log  # nothing after the failed step ran
