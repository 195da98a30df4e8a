from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError, StormproofError
from stormproof.sim import Interrupt, Simulation, SimulationLimitExceeded, stream_seed


def test_events_run_in_time_then_priority_then_insertion_order() -> None:
    sim = Simulation()
    seen: list[str] = []
    sim.schedule(2.0, seen.append, "t2")
    sim.schedule(1.0, seen.append, "t1-p0-first")
    sim.schedule(1.0, seen.append, "t1-p-1", priority=-1)
    sim.schedule(1.0, seen.append, "t1-p0-second")
    sim.schedule(0.0, seen.append, "t0")
    sim.run()
    assert seen == ["t0", "t1-p-1", "t1-p0-first", "t1-p0-second", "t2"]
    assert sim.now() == 2.0


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(-3, 3)), max_size=60))
@settings(max_examples=100)
def test_execution_order_is_the_sorted_order_of_time_priority_sequence(
    items: list[tuple[float, int]],
) -> None:
    sim = Simulation()
    ran: list[tuple[float, int, int]] = []
    for index, (delay, priority) in enumerate(items):
        sim.schedule(
            delay, lambda d=delay, p=priority, i=index: ran.append((d, p, i)), priority=priority
        )
    sim.run()
    assert ran == sorted((d, p, i) for i, (d, p) in enumerate(items))


def test_run_until_stops_at_the_bound_and_keeps_later_events() -> None:
    sim = Simulation()
    seen: list[float] = []
    for t in (1.0, 2.0, 3.0):
        sim.schedule(t, lambda t=t: seen.append(t))
    assert sim.run(until=2.0) == 2.0
    assert seen == [1.0, 2.0]
    assert sim.peek() == 3.0
    sim.run(until=10.0)
    assert seen == [1.0, 2.0, 3.0]
    assert sim.now() == 10.0


def test_cancelled_events_do_not_run() -> None:
    sim = Simulation()
    seen: list[str] = []
    handle = sim.schedule(1.0, seen.append, "cancelled")
    sim.schedule(2.0, seen.append, "kept")
    Simulation.cancel(handle)
    Simulation.cancel(handle)
    sim.run()
    assert seen == ["kept"]


def test_scheduling_in_the_past_is_rejected() -> None:
    sim = Simulation()
    with pytest.raises(ConfigError, match="delay"):
        sim.schedule(-1.0, print)
    with pytest.raises(ConfigError, match="delay"):
        sim.schedule(math.nan, print)


def test_max_events_stops_a_runaway_model_with_a_message() -> None:
    sim = Simulation(max_events=1000)

    def forever() -> None:
        sim.schedule(1.0, forever)

    sim.schedule(0.0, forever)
    with pytest.raises(SimulationLimitExceeded, match="1000 events"):
        sim.run()


def test_processes_sleep_wait_for_events_and_return_values() -> None:
    sim = Simulation()
    gate = sim.event()
    log: list[tuple[float, str]] = []

    def waiter():  # type: ignore[no-untyped-def]
        value = yield gate
        log.append((sim.now(), f"gate:{value}"))
        yield 2.5
        log.append((sim.now(), "slept"))
        return "done"

    def opener():  # type: ignore[no-untyped-def]
        yield 4.0
        gate.succeed("open")

    proc = sim.process(waiter())
    sim.process(opener())
    sim.run()
    assert log == [(4.0, "gate:open"), (6.5, "slept")]
    assert proc.triggered and proc.value == "done"


def test_a_process_can_wait_for_another_process_and_see_its_failure() -> None:
    sim = Simulation()

    def child():  # type: ignore[no-untyped-def]
        yield 1.0
        raise ValueError("boom")

    caught: list[BaseException] = []

    def parent():  # type: ignore[no-untyped-def]
        try:
            yield sim.process(child())
        except ValueError as error:
            caught.append(error)

    sim.process(parent())
    sim.run()
    assert [str(e) for e in caught] == ["boom"]


def test_interrupt_cancels_the_pending_wait() -> None:
    sim = Simulation()
    log: list[tuple[float, str]] = []

    def sleeper():  # type: ignore[no-untyped-def]
        try:
            yield 10.0
            log.append((sim.now(), "woke"))
        except Interrupt as interrupt:
            log.append((sim.now(), f"interrupted:{interrupt.cause}"))

    proc = sim.process(sleeper())
    sim.schedule(3.0, proc.interrupt, "timeout")
    sim.run()
    assert log == [(3.0, "interrupted:timeout")]
    assert not proc.alive


def test_any_of_returns_the_first_event_and_detaches_from_the_rest() -> None:
    sim = Simulation()
    reply = sim.event()
    result: list[object] = []

    def client():  # type: ignore[no-untyped-def]
        first, value = yield sim.any_of([reply, sim.timeout(3.0, "timeout")])
        result.append((sim.now(), value, first is reply))

    sim.process(client())
    sim.schedule(1.0, reply.succeed, "reply")
    sim.run()
    assert result == [(1.0, "reply", True)]


def test_an_event_triggers_only_once() -> None:
    sim = Simulation()
    event = sim.event().succeed(1)
    with pytest.raises(StormproofError):
        event.succeed(2)


def test_named_streams_are_independent_of_creation_order() -> None:
    a = Simulation(seed=42)
    first = [a.rng("arrivals").random() for _ in range(3)]
    b = Simulation(seed=42)
    b.rng("some-new-component").random()
    assert [b.rng("arrivals").random() for _ in range(3)] == first
    assert Simulation(seed=43).rng("arrivals").random() != first[0]
    assert stream_seed(42, "arrivals") == stream_seed(42, "arrivals")


def _model_hash(seed: int) -> str:
    sim = Simulation(seed)
    rng = sim.rng("model")

    def tick(n: int) -> None:
        if n:
            sim.schedule(rng.expovariate(1.0), tick, n - 1)

    sim.schedule(0.0, tick, 200)
    sim.run()
    return sim.trace_hash()


def test_trace_hash_depends_on_the_seed_and_is_repeatable() -> None:
    assert _model_hash(1) == _model_hash(1)
    assert _model_hash(1) != _model_hash(2)
    assert len(_model_hash(1)) == 32


def test_trace_hash_is_stable_across_processes_and_hash_seeds() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_kernel import _model_hash
        print(_model_hash(7))
        """
    )
    here = os.path.dirname(__file__)
    hashes = set()
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code, here], env=env, capture_output=True, text=True, check=True
        )
        hashes.add(out.stdout.strip())
    assert hashes == {_model_hash(7)}


def test_trace_log_records_every_event() -> None:
    sim = Simulation(trace=True)
    sim.schedule(1.0, lambda: None)
    sim.schedule(2.0, sim.event().succeed)
    sim.run()
    assert sim.trace_log is not None
    assert [(t, p) for t, p, _ in sim.trace_log] == [(1.0, 0), (2.0, 0)]
    assert sim.trace_log[1][2] == "Event.succeed"


def test_max_events_runs_exactly_that_many_and_keeps_the_rest_pending() -> None:
    sim = Simulation(max_events=5)
    ran: list[int] = []
    for i in range(8):
        sim.schedule(float(i), ran.append, i)
    with pytest.raises(SimulationLimitExceeded, match="stopped after 5 events"):
        sim.run()
    assert ran == [0, 1, 2, 3, 4]
    assert sim.pending() == 3 and sim.now() == 4.0


def test_any_of_fails_when_the_first_event_fails() -> None:
    sim = Simulation()
    broken = sim.event()
    caught: list[str] = []

    def waiter():  # type: ignore[no-untyped-def]
        try:
            yield sim.any_of([broken, sim.timeout(5.0)])
        except ConnectionError as error:
            caught.append(str(error))

    sim.process(waiter())
    sim.schedule(1.0, broken.fail, ConnectionError("reset"))
    sim.run()
    assert caught == ["reset"]


def test_run_until_moves_the_clock_to_the_horizon() -> None:
    sim = Simulation()
    sim.schedule(1.0, lambda: None)
    assert sim.run(until=80.0) == 80.0
    assert Simulation().run() == 0.0
