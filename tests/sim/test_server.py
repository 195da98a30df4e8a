"""Server: workers, bounded FIFO queue, rejection, service time by concurrency, counters."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.sim.kernel import Simulation
from stormproof.sim.parts.server import LinearSlowdown, Server


def constant(seconds: float):  # type: ignore[no-untyped-def]
    def service(concurrency: int, rng: random.Random) -> float:
        return seconds

    return service


class Recorder:
    """A done-callback that remembers (time, work, tag) of each completion."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.done: list[tuple[float, float, str]] = []

    def __call__(self, work: float, tag: str) -> None:
        self.done.append((self.sim.now(), work, tag))


def test_unlimited_workers_start_everything_at_once() -> None:
    sim = Simulation()
    server = Server(sim, constant(2.0))
    done = Recorder(sim)
    assert all(server.submit(done, f"r{i}") for i in range(50))
    assert server.in_service == 50
    assert server.queued == 0
    sim.run()
    assert [t for t, _, _ in done.done] == [2.0] * 50
    assert server.completed == 50
    assert server.in_service == 0
    assert server.rejected == 0


def test_two_workers_and_queue_of_one_reject_the_fourth_request() -> None:
    sim = Simulation()
    server = Server(sim, constant(1.0), workers=2, queue_limit=1)
    done = Recorder(sim)
    accepted = [server.submit(done, tag) for tag in ("a", "b", "c", "d")]
    assert accepted == [True, True, True, False]
    assert server.rejected == 1
    assert server.in_service == 2
    assert server.queued == 1
    sim.run()
    # the rejected request is never served: its callback is never called
    assert sorted(tag for _, _, tag in done.done) == ["a", "b", "c"]
    assert [t for t, _, tag in done.done if tag == "c"] == [2.0]
    assert server.completed == 3
    assert server.rejected == 1


def test_queue_limit_zero_rejects_whenever_all_workers_are_busy() -> None:
    sim = Simulation()
    server = Server(sim, constant(1.0), workers=1, queue_limit=0)
    done = Recorder(sim)
    assert server.submit(done, "a")
    assert not server.submit(done, "b")
    sim.run()
    assert server.submit(done, "c")  # the worker is free again
    sim.run()
    assert [tag for _, _, tag in done.done] == ["a", "c"]
    assert server.rejected == 1


def test_queued_work_runs_in_fifo_order() -> None:
    sim = Simulation()
    server = Server(sim, constant(1.0), workers=1)
    done = Recorder(sim)
    for tag in "abcdef":
        assert server.submit(done, tag)
    assert server.queued == 5
    sim.run()
    assert [tag for _, _, tag in done.done] == list("abcdef")
    assert [t for t, _, _ in done.done] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_fifo_with_several_workers_and_arrivals_over_time() -> None:
    sim = Simulation()
    server = Server(sim, constant(3.0), workers=2)
    done = Recorder(sim)
    for i, at in enumerate([0.0, 0.5, 1.0, 1.5, 2.0]):
        sim.at(at, server.submit, done, f"r{i}")
    sim.run()
    # r0 and r1 run at once; r2, r3, r4 wait and start in arrival order as workers free up
    assert done.done == [
        (3.0, 3.0, "r0"),
        (3.5, 3.0, "r1"),
        (6.0, 3.0, "r2"),
        (6.5, 3.0, "r3"),
        (9.0, 3.0, "r4"),
    ]


def test_linear_slowdown_uses_the_concurrency_at_start() -> None:
    sim = Simulation()
    server = Server(sim, LinearSlowdown(1.0, 0.5))
    done = Recorder(sim)
    for tag in "abc":
        server.submit(done, tag)
    sim.run()
    # concurrency 1, 2, 3 when a, b, c started (each counts itself)
    assert sorted((tag, work) for _, work, tag in done.done) == [
        ("a", 1.5),
        ("b", 2.0),
        ("c", 2.5),
    ]
    assert done.done[0] == (1.5, 1.5, "a")
    # a later request on an idle server is back to concurrency 1
    sim.schedule(0.0, server.submit, done, "d")
    sim.run()
    assert done.done[-1][1:] == (1.5, "d")


def test_queued_request_starts_at_the_concurrency_of_the_moment_it_starts() -> None:
    sim = Simulation()
    seen: list[tuple[float, int]] = []

    def service(concurrency: int, rng: random.Random) -> float:
        seen.append((sim.now(), concurrency))
        return 1.0

    server = Server(sim, service, workers=2)
    done = Recorder(sim)
    for tag in "abc":
        server.submit(done, tag)
    sim.run()
    # c starts at t=1 when a finished and b is still in service: concurrency 2
    assert seen == [(0.0, 1), (0.0, 2), (1.0, 2)]


def test_done_receives_the_work_seconds_and_busy_time_sums_them() -> None:
    sim = Simulation()
    works = iter([0.25, 4.0, 1.5])

    def service(concurrency: int, rng: random.Random) -> float:
        return next(works)

    server = Server(sim, service, workers=1)
    received: list[tuple[float, str, int]] = []
    for i, tag in enumerate("xyz"):
        server.submit(lambda work, tag, i: received.append((work, tag, i)), tag, i)
    sim.run()
    assert received == [(0.25, "x", 0), (4.0, "y", 1), (1.5, "z", 2)]
    assert server.busy_time == pytest.approx(5.75)
    assert sim.now() == pytest.approx(5.75)
    assert server.completed == 3


def test_service_rng_is_a_named_stream_of_the_simulation() -> None:
    draws: list[list[float]] = []
    for _ in range(2):
        sim = Simulation(seed=9)
        values: list[float] = []

        def service(concurrency: int, rng: random.Random, values: list[float] = values) -> float:
            value = rng.random()
            values.append(value)
            return value

        server = Server(sim, service, name="db")
        for _ in range(3):
            server.submit(lambda work: None)
        sim.run()
        draws.append(values)
    assert draws[0] == draws[1]
    stream = Simulation(seed=9).rng("db.service")
    assert draws[0] == [stream.random() for _ in range(3)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"queue_limit": -1}, "queue_limit"),
        ({"service_time": 3.0}, "service_time"),
    ],
)
def test_invalid_configuration_names_the_field(kwargs: dict[str, object], field: str) -> None:
    options: dict[str, object] = {"service_time": constant(1.0), **kwargs}
    with pytest.raises(ConfigError) as info:
        Server(Simulation(), **options)  # type: ignore[arg-type]
    assert info.value.field == field


def test_linear_slowdown_rejects_negative_coefficients() -> None:
    with pytest.raises(ConfigError):
        LinearSlowdown(-1.0, 0.0)
    with pytest.raises(ConfigError):
        LinearSlowdown(1.0, -0.01)
    assert LinearSlowdown(1.0, 0.01)(10, random.Random()) == pytest.approx(1.1)


@given(
    workers=st.one_of(st.none(), st.integers(1, 4)),
    queue_limit=st.one_of(st.none(), st.integers(0, 3)),
    submits=st.lists(st.tuples(st.floats(0, 10), st.floats(0.01, 5)), max_size=30),
)
@settings(max_examples=150)
def test_conservation_and_worker_bound(
    workers: int | None,
    queue_limit: int | None,
    submits: list[tuple[float, float]],
) -> None:
    sim = Simulation()
    works = [w for _, w in submits]
    max_seen = [0]

    def service(concurrency: int, rng: random.Random) -> float:
        max_seen[0] = max(max_seen[0], concurrency)
        assert concurrency == server.in_service
        return works.pop()

    server = Server(sim, service, workers=workers, queue_limit=queue_limit)
    accepted: list[bool] = []
    finished: list[float] = []
    for at, _ in submits:
        sim.at(
            at,
            lambda: accepted.append(server.submit(lambda work: finished.append(work))),
        )
    sim.run()
    assert len(accepted) == len(submits)
    assert server.rejected == accepted.count(False)
    assert server.completed == accepted.count(True) == len(finished)
    assert server.in_service == 0 and server.queued == 0
    assert server.busy_time == pytest.approx(sum(finished))
    if workers is not None:
        assert max_seen[0] <= workers
    if queue_limit is None:
        assert server.rejected == 0
