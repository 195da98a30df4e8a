"""Multilevel splitting: cloning, determinism, and agreement with plain Monte Carlo."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.sim import scenarios
from stormproof.sim.kernel import Simulation
from stormproof.sim.rare import (
    CollapseBuilder,
    SplittingPlan,
    clone_run,
    estimate_by_monte_carlo,
    estimate_by_splitting,
    t_quantile_975,
)

# A shortened simple-collapse: a long, moderate spike at [10 s, 18 s), judged over [22 s, 30 s).
# At spike_rate 66 about one run in five sticks (both estimators are feasible); at 60 about one in
# a thousand (plain Monte Carlo with the same budget sees none).
SHORT = {"spike_start": 10, "spike_s": 8, "horizon": 30, "late_start": 22}


def test_unsplit_run_matches_the_scenario() -> None:
    scenario = scenarios.get("simple-collapse")
    params = scenario.resolve({"spike_s": 4})
    build = CollapseBuilder.from_overrides({"spike_s": 4})
    for seed in range(3):
        run = build(seed)
        run.sim.run(until=run.horizon)
        result = scenario.run(params, "no_backoff", seed)
        assert run.late_goodput() == result.metrics["late_goodput_per_s"]
        assert run.occurred() == result.stuck


def test_clone_is_independent_and_reproducible() -> None:
    build = CollapseBuilder.from_overrides(SHORT)
    run = build(7)
    run.sim.run(until=14.0)
    first, again, other = clone_run(run, "x"), clone_run(run, "x"), clone_run(run, "y")
    for twin in (first, again, other):
        assert twin.sim is not run.sim and twin.server is not run.server
        assert twin.importance() == run.importance()
    for item in (run, first, again, other):
        item.sim.run(until=item.horizon)
    assert first.late_goodput() == again.late_goodput()
    assert first.sim.events_run == again.sim.events_run
    # Reseeded streams give a different future; the original is untouched by its copies.
    assert first.sim.events_run != other.sim.events_run
    plain = build(7)
    plain.sim.run(until=plain.horizon)
    assert plain.late_goodput() == run.late_goodput()


def test_clone_refuses_hashed_or_process_runs() -> None:
    class Hashed:
        def __init__(self, sim: Simulation) -> None:
            self.sim = sim
            self.horizon = 1.0

        def importance(self) -> float:
            return 0.0

        def occurred(self) -> bool:
            return False

    sim = Simulation(1)
    sim.schedule(0.5, print)
    sim.run(until=0.1)
    with pytest.raises(ConfigError, match="hash_trace"):
        clone_run(Hashed(sim), "a")

    def ticker(sim: Simulation):  # type: ignore[no-untyped-def]
        while True:
            yield 1.0

    quiet = Simulation(1, hash_trace=False)
    quiet.process(ticker(quiet))
    quiet.run(until=2.5)
    with pytest.raises(ConfigError, match="generator"):
        clone_run(Hashed(quiet), "a")


def test_plan_validation() -> None:
    with pytest.raises(ConfigError, match="levels"):
        SplittingPlan(levels=())
    with pytest.raises(ConfigError, match=r"levels\[1\]"):
        SplittingPlan(levels=(10, 10))
    with pytest.raises(ConfigError, match="splits"):
        SplittingPlan(levels=(1,), splits=1)
    with pytest.raises(ConfigError, match="roots"):
        SplittingPlan(levels=(1,), roots=1)
    with pytest.raises(ConfigError, match="check_every"):
        SplittingPlan(levels=(1,), check_every=0)


def test_t_quantile() -> None:
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(10) == pytest.approx(2.228, abs=2e-3)
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile_975(10_000) == pytest.approx(1.960, abs=1e-3)


@given(st.integers(min_value=3, max_value=500))
def test_t_quantile_decreases_towards_normal(df: int) -> None:
    assert 1.959 < t_quantile_975(df + 1) < t_quantile_975(df)


def test_same_seed_same_estimate_with_any_workers() -> None:
    build = CollapseBuilder.from_overrides({**SHORT, "spike_rate": 66})
    plan = SplittingPlan(levels=(190, 200), splits=2, roots=4)
    one = estimate_by_splitting(build, plan, seed=5, workers=1)
    two = estimate_by_splitting(build, plan, seed=5, workers=2)
    assert one == two
    assert estimate_by_splitting(build, plan, seed=6, workers=1).per_root != one.per_root


def test_splitting_agrees_with_monte_carlo_at_a_moderate_point() -> None:
    build = CollapseBuilder.from_overrides({**SHORT, "spike_rate": 66})
    mc = estimate_by_monte_carlo(build, 100, seed=1000, workers=2)
    split = estimate_by_splitting(
        build, SplittingPlan(levels=(190, 200), splits=2, roots=60), seed=1000, workers=2
    )
    assert 0.05 < mc.probability < 0.4
    assert split.trajectories > split.roots  # it did split
    # The two intervals overlap and each contains the other's estimate.
    assert mc.ci95[0] <= split.probability <= mc.ci95[1]
    assert split.ci95[0] <= mc.probability <= split.ci95[1]


def test_splitting_resolves_what_monte_carlo_cannot() -> None:
    build = CollapseBuilder.from_overrides({**SHORT, "spike_rate": 60})
    plan = SplittingPlan(levels=(150, 158, 166, 174, 182, 190), splits=3, roots=40)
    split = estimate_by_splitting(build, plan, seed=1000, workers=2)
    mc = estimate_by_monte_carlo(build, math.ceil(split.work_runs), seed=1000, workers=2)
    assert mc.hits == 0
    assert split.probability > 0.0
    low, high = split.ci95
    assert high > low  # a real interval, not a point
    assert high < mc.ci95[1]  # tighter than what the same budget of plain runs can say
    assert split.probability < 0.01
