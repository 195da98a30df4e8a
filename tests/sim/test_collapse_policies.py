"""stormproof's own answers to the simple-collapse storm: a retry budget and a circuit breaker."""

from __future__ import annotations

from stormproof.sim import scenarios
from stormproof.sim.experiment import run_experiment


def test_budget_and_breaker_escape_the_storm_that_sticks_without_backoff() -> None:
    scenario = scenarios.get("simple-collapse")
    result = run_experiment(
        scenario,
        scenario.resolve({"spike_s": 5}),
        ["no_backoff", "retry_budget", "circuit_breaker"],
        [0, 1, 2, 3],
        workers=1,
    )
    stuck_without = result.policies["no_backoff"].stuck_runs
    assert stuck_without >= 2  # the storm happens on these seeds
    for name in ("retry_budget", "circuit_breaker"):
        summary = result.policies[name]
        assert summary.stuck_runs == 0, name
        assert (summary.metrics["amplification"] or 0.0) < 1.2
        # They escape by failing some requests fast instead of retrying them all.
        assert (summary.metrics["failures"] or 0.0) > 0


def test_the_breaker_short_circuits_during_the_storm() -> None:
    scenario = scenarios.get("simple-collapse")
    params = scenario.resolve({"spike_s": 5})
    run = scenario.run(params, "circuit_breaker", 0, series=True)
    calm = scenario.run(scenario.resolve({"spike_s": 0}), "circuit_breaker", 0)
    assert not run.stuck and not calm.stuck
    assert run.metrics["short_circuits"] > 0
    assert calm.metrics["short_circuits"] == 0.0  # no storm: the breaker never opens
    assert calm.metrics["failures"] == 0.0
