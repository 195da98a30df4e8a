"""Unspent work budget: carried only while work is left, so idle capacity is not banked.

A DWFM host and the Network Manager serve a :class:`BatchQueue` with a budget of work units
per step. What a step could not spend because the next item cost more than was left is carried
to the next step (the part-done item); what it could not spend because the queue ran dry is
idle capacity and is lost. These tests run a part under light load for many steps -- its queue
non-empty at the start of every step and empty by its end -- then hand it a surge, and check
that the surge is served at the part's nominal rate: not faster (no banked capacity) and not
slower (fractions of an item still carry over while a backlog stands).
"""

from __future__ import annotations

import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from stormproof.policies.backoff import NoBackoff
from stormproof.policies.retry import RetryPolicy
from stormproof.sim.kernel import Simulation
from stormproof.sim.parts.lease import DwfmConfig, DwfmHost, HostControls
from stormproof.sim.parts.propagation import PropagationManager

STEP = 10.0
SURGE = 50_000


def _host(host_rate: float, api_rate: float) -> DwfmHost:
    config = DwfmConfig(
        droplets_per_host=300,
        host_rate=host_rate,
        establish_cost=3.0,
        check_interval=300.0,
        attempt_timeout=1e6,  # the surge's callers wait: every item is served, none expire
        lapse_mean=3600.0,
        slowdown_knee=1e12,  # no slowdown: the nominal rate is host_rate throughout
        slowdown_cap=1.0,
        api_rate=api_rate,
        step=STEP,
    )
    controls = HostControls(retry=RetryPolicy(max_attempts=None, backoff=NoBackoff()))
    return DwfmHost(config, controls, random.Random(0))


def _served(host: DwfmHost) -> float:
    return host.useful_units + host.wasted_units


def _surge_after_idle(host: DwfmHost, idle_steps: int, surge_steps: int) -> tuple[float, float]:
    """Units served in the last idle step and in ``surge_steps`` steps after the surge."""
    index = 0
    for index in range(1, idle_steps + 1):
        host.step(index * STEP, index)
    before = _served(host)
    now = (idle_steps + 1) * STEP
    host.offer_api(now, SURGE)
    for index in range(idle_steps + 1, idle_steps + 1 + surge_steps):
        host.step(index * STEP, index)
    return before, _served(host) - before


def test_dwfm_host_under_light_load_empties_its_queue_every_step() -> None:
    host = _host(host_rate=10.0, api_rate=2.0)
    for index in range(1, 51):
        host.step(index * STEP, index)
        # Work arrived at the start of the step (renewals, API) and was all served.
        assert host.queue.length == 0
    assert host.leased == 300
    assert host.api_ok > 0


def test_dwfm_host_does_not_bank_idle_capacity_for_a_surge() -> None:
    host = _host(host_rate=10.0, api_rate=2.0)
    # 200 steps at 30 % load: the old model banked 70 units a step, 14,000 in all, and served
    # most of the surge in its first step.
    _, served = _surge_after_idle(host, idle_steps=200, surge_steps=1)
    assert served <= 10.0 * STEP
    assert host.queue.length > SURGE - 2 * 10.0 * STEP


@settings(max_examples=30, deadline=None)
@given(
    idle_steps=st.integers(0, 300),
    host_rate=st.floats(2.0, 40.0),
    load=st.floats(0.0, 0.9),
    surge_steps=st.integers(1, 30),
)
def test_dwfm_host_serves_a_surge_at_its_nominal_rate(
    idle_steps: int, host_rate: float, load: float, surge_steps: int
) -> None:
    # Renewal checks take 1 unit per droplet per 300 s; API work fills the rest of ``load``.
    renewals = 300 / 300.0
    api_rate = max(0.0, load * host_rate - renewals)
    host = _host(host_rate, api_rate)
    _, served = _surge_after_idle(host, idle_steps, surge_steps)
    nominal = host_rate * STEP * surge_steps
    # Not faster than the rate: nothing was banked while idle. Not slower than the rate less
    # one item: a step's fraction of an item carries over while the backlog stands.
    # At most the unfinished fraction of one item carries in from before the surge.
    assert served < nominal + 1.0
    assert served >= nominal - 1.0 - 1e-6


def _manager(sim: Simulation, rate: float) -> PropagationManager:
    # A knee far beyond the surge: throughput is the nominal rate at every working set here.
    return PropagationManager(sim, rate=rate, knee=1e15, step=STEP, horizon=1e6)


def _propagated_at(sim: Simulation, manager: PropagationManager, times: list[float]) -> list[int]:
    """``manager.propagated`` half a step after each of ``times`` (between two steps)."""
    seen: list[int] = []
    for time in times:
        sim.at(time + STEP / 2, lambda: seen.append(manager.propagated))
    sim.run(until=max(times) + STEP)
    return seen


def test_network_manager_does_not_bank_idle_capacity_for_a_surge() -> None:
    sim = Simulation(0)
    manager = _manager(sim, rate=10.0)
    manager.start()
    manager.set_launch_rate(3.0)  # 30 % load: the working set empties every step
    idle_end = 200 * STEP
    sim.at(idle_end + STEP / 2, manager.release_backlog, SURGE, 1e9)
    sim.at(idle_end + STEP / 2, manager.set_launch_rate, 0.0)
    before, first, fifth = _propagated_at(
        sim, manager, [idle_end, idle_end + STEP, idle_end + 5 * STEP]
    )
    assert manager.launches > 0
    # The step after the hand-over serves one step's worth, then one per step.
    assert first - before <= 10.0 * STEP
    assert fifth - before <= 5 * 10.0 * STEP
    assert fifth - before >= 5 * 10.0 * STEP - 1
    assert manager.working_set > SURGE - 6 * 10.0 * STEP


@settings(max_examples=25, deadline=None)
@given(
    idle_steps=st.integers(0, 200),
    rate=st.floats(2.0, 40.0),
    load=st.floats(0.0, 0.9),
    surge_steps=st.integers(1, 20),
)
@example(idle_steps=7, rate=3.375, load=0.875, surge_steps=1)
def test_network_manager_serves_a_surge_at_its_nominal_rate(
    idle_steps: int, rate: float, load: float, surge_steps: int
) -> None:
    sim = Simulation(1)
    manager = _manager(sim, rate)
    manager.start()
    manager.set_launch_rate(load * rate)
    idle_end = idle_steps * STEP
    sim.at(idle_end + STEP / 2, manager.release_backlog, SURGE, 1e9)
    sim.at(idle_end + STEP / 2, manager.set_launch_rate, 0.0)
    before, after = _propagated_at(sim, manager, [idle_end, idle_end + surge_steps * STEP])
    nominal = manager.rate * STEP * surge_steps
    served = after - before
    # Launches that arrived in the last idle step may still be queued ahead of the surge:
    # they are served from the same budget, so the bound holds for everything propagated.
    # At most the unfinished fraction of one item carries in from before the surge (hypothesis
    # found 34 items in a 33.75-item window after a step that ended mid-item).
    assert served < nominal + 1.0
    assert served >= nominal - 1.0 - 1e-6
