"""The retry-orbit chain against the simulator: same model, same answers within intervals."""

from __future__ import annotations

import math
import statistics
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.sim.analytic import OrbitParams, OrbitSimulation
from stormproof.sim.rare import t_quantile_975
from stormproof.sim.stats import wilson_interval

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from stormproof.sim.analytic.ctmc import OrbitChain  # noqa: E402

PARAMS = OrbitParams()  # lambda 6, mu 10, K 20, timeout mean 2 s, backoff mean 1 s, p 0.9


def _interval(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


@pytest.fixture(scope="module")
def chain() -> OrbitChain:
    return OrbitChain(PARAMS)


def test_generator_rows_sum_to_zero(chain: OrbitChain) -> None:
    sums = np.asarray(chain.generator.sum(axis=1)).ravel()
    assert np.abs(sums).max() < 1e-9
    assert chain.states == 231 * 61  # (K+1)(K+2)/2 server states x (bound + 1) orbit sizes


def test_without_timeouts_or_retries_it_is_mm1k() -> None:
    # Timeouts almost never fire and nobody retries: an M/M/1/K queue (processor sharing does
    # not change the number in system), whose stationary law is geometric.
    params = OrbitParams(
        arrival_rate=6,
        service_rate=10,
        capacity=8,
        timeout_rate=1e-9,
        retry_probability=0.0,
        orbit_bound=2,
        high_from=4,
    )
    summary = OrbitChain(params).summarize(OrbitChain(params).stationary())
    rho = 0.6
    exact = [(1 - rho) * rho**n / (1 - rho**9) for n in range(9)]
    assert summary.in_server_distribution == pytest.approx(exact, abs=1e-6)


def test_stationary_law_is_bimodal(chain: OrbitChain) -> None:
    summary = chain.summarize(chain.stationary())
    law = summary.in_server_distribution
    trough = min(law[5:15])
    assert law[0] > 5 * trough and law[-1] > 3 * trough  # a healthy and a congested mode
    assert summary.at_bound < 1e-8  # the orbit bound does not matter here


def test_stationary_agrees_with_simulation(chain: OrbitChain) -> None:
    summary = chain.summarize(chain.stationary())
    runs = [OrbitSimulation(PARAMS, 300 + seed).run(100.0, 2500.0) for seed in range(16)]
    low, high = _interval([run.mean_in_server for run in runs])
    assert low <= summary.mean_in_server <= high
    low, high = _interval([run.high_fraction for run in runs])
    assert low <= summary.high_probability <= high
    low, high = _interval([run.goodput for run in runs])
    assert low <= summary.goodput <= high


def test_transient_after_a_spike_agrees_with_simulation(chain: OrbitChain) -> None:
    # A spike left the server full of timed-out work and 10 requests in the orbit.
    start = (0, 20, 10)
    summary = chain.summarize(chain.transient(start, 20.0))
    runs = [OrbitSimulation(PARAMS, seed, initial=start).run(0.0, 20.0) for seed in range(600)]
    high = sum(1 for run in runs if run.end_in_server >= PARAMS.high_from)
    low_p, high_p = wilson_interval(high, len(runs))
    assert low_p <= summary.high_probability <= high_p
    assert 0.2 < summary.high_probability < 0.7  # still undecided after 20 s: metastable
    low, upper = _interval([float(run.end_in_server) for run in runs])
    assert low <= summary.mean_in_server <= upper


def test_simulation_is_deterministic() -> None:
    first = OrbitSimulation(PARAMS, 3).run(10.0, 50.0)
    assert first == OrbitSimulation(PARAMS, 3).run(10.0, 50.0)
    assert first != OrbitSimulation(PARAMS, 4).run(10.0, 50.0)


@settings(max_examples=25, deadline=None)
@given(
    live=st.integers(0, 5),
    dead=st.integers(0, 5),
    orbit=st.integers(0, 5),
    timeout=st.sampled_from(["exponential", "fixed"]),
)
def test_simulation_keeps_its_books(live: int, dead: int, orbit: int, timeout: str) -> None:
    params = OrbitParams(capacity=10, high_from=5)
    run = OrbitSimulation(params, 1, initial=(live, dead, orbit), timeout=timeout)  # type: ignore[arg-type]
    stats = run.run(0.0, 5.0)
    assert 0 <= run.live <= run.in_server <= params.capacity
    assert stats.end_orbit == run.orbit >= 0
    assert 0.0 <= stats.high_fraction <= 1.0


def test_bad_parameters_name_the_field() -> None:
    with pytest.raises(ConfigError, match="retry_probability"):
        OrbitParams(retry_probability=1.0)
    with pytest.raises(ConfigError, match="high_from"):
        OrbitParams(capacity=5, high_from=6)
    with pytest.raises(ConfigError, match="timeout"):
        OrbitSimulation(PARAMS, 0, timeout="uniform")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="initial"):
        OrbitSimulation(PARAMS, 0, initial=(15, 10, 0))
    with pytest.raises(ConfigError, match="orbit"):
        OrbitChain(OrbitParams(capacity=3, high_from=2, orbit_bound=2)).state_index(0, 0, 3)


def test_missing_scipy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from stormproof.sim.analytic import ctmc

    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    with pytest.raises(ImportError, match=r"stormproof\[analysis\]"):
        ctmc.OrbitChain(PARAMS)
