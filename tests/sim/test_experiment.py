"""run_experiment: worker-count independence, common random numbers, summaries, validation."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from stormproof.errors import ConfigError
from stormproof.sim import scenarios
from stormproof.sim.experiment import ExperimentResult, run_experiment
from stormproof.sim.scenario import RunResult, Scenario
from stormproof.sim.stats import wilson_interval

SHORT = {"horizon": 40, "late_start": 30}


@pytest.fixture(scope="module")
def collapse() -> Scenario:
    return scenarios.get("simple-collapse")


@pytest.fixture(scope="module")
def occ() -> Scenario:
    return scenarios.get("occ-jitter")


def _comparable(run: RunResult) -> tuple[Any, ...]:
    """A run as plain data, NaN replaced so that equal runs compare equal."""
    metrics = {k: ("nan" if math.isnan(v) else v) for k, v in run.metrics.items()}
    return (run.scenario, run.policy, run.seed, run.stuck, metrics, run.trace_hash, run.series)


def _all_runs(result: ExperimentResult) -> list[tuple[Any, ...]]:
    return [_comparable(r) for s in result.policies.values() for r in s.results]


def test_results_do_not_depend_on_the_number_of_workers(occ: Scenario) -> None:
    params = occ.resolve({"clients": 5})
    seeds = [0, 1, 2, 3]
    serial = run_experiment(occ, params, occ.policies, seeds, workers=1)
    pooled = run_experiment(occ, params, occ.policies, seeds, workers=2)
    assert _all_runs(serial) == _all_runs(pooled)
    assert serial.to_json() == pooled.to_json()
    for name in occ.policies:
        assert serial.policies[name].trace_hashes == pooled.policies[name].trace_hashes
        assert [r.seed for r in pooled.policies[name].results] == seeds


def test_simple_collapse_is_identical_with_one_or_two_workers(collapse: Scenario) -> None:
    params = collapse.resolve({"spike_s": 5, **SHORT})
    seeds = [0, 1]
    serial = run_experiment(collapse, params, collapse.policies, seeds, workers=1, series=True)
    pooled = run_experiment(collapse, params, collapse.policies, seeds, workers=2, series=True)
    assert _all_runs(serial) == _all_runs(pooled)
    for name in collapse.policies:
        a, b = serial.policies[name], pooled.policies[name]
        assert (a.stuck_runs, a.trace_hashes) == (b.stuck_runs, b.trace_hashes)


def test_common_random_numbers_give_every_policy_the_same_arrivals(collapse: Scenario) -> None:
    for overrides in ({"spike_s": 1}, {"spike_s": 5, **SHORT}):
        params = collapse.resolve(overrides)
        result = run_experiment(collapse, params, collapse.policies, [0, 1], workers=1, series=True)
        runs = [result.policies[p].results for p in collapse.policies]
        no_backoff, jitter = runs[0], runs[1]
        for other in runs[1:]:
            for a, b in zip(no_backoff, other, strict=True):
                assert a.seed == b.seed
                assert a.series["requests"] == b.series["requests"]
                assert sum(a.series["requests"]) > 0
    # at a 5 s spike the policies behave differently on that same workload (seed 0 sticks
    # without backoff): the identical requests are not because nothing happened
    assert no_backoff[0].stuck and not jitter[0].stuck
    assert no_backoff[0].series["attempts"] != jitter[0].series["attempts"]


def test_trace_hash_is_reproducible_and_differs_across_seeds(collapse: Scenario) -> None:
    params = collapse.resolve({"spike_s": 1, **SHORT})
    first = run_experiment(collapse, params, ["no_backoff"], [0, 1, 2], workers=1)
    again = run_experiment(collapse, params, ["no_backoff"], [0, 1, 2], workers=1)
    hashes = first.policies["no_backoff"].trace_hashes
    assert hashes == again.policies["no_backoff"].trace_hashes
    assert len(set(hashes)) == 3
    assert all(len(h) == 32 and int(h, 16) >= 0 for h in hashes)


def test_stuck_probability_and_ci_follow_from_stuck_runs(collapse: Scenario) -> None:
    params = collapse.resolve({"spike_s": 5, **SHORT})
    seeds = [0, 1, 2, 3]
    result = run_experiment(collapse, params, collapse.policies, seeds, workers=1)
    assert result.scenario == "simple-collapse"
    assert result.seeds == seeds
    assert result.params == params
    for summary in result.policies.values():
        stuck = sum(r.stuck for r in summary.results)
        assert summary.runs == len(seeds) == len(summary.results)
        assert summary.stuck_runs == stuck
        assert summary.stuck_probability == stuck / len(seeds)
        assert summary.ci95 == wilson_interval(stuck, len(seeds))
        assert summary.ci95[0] <= summary.stuck_probability <= summary.ci95[1]
        assert summary.trace_hashes == [r.trace_hash for r in summary.results]
    assert result.policies["no_backoff"].stuck_runs >= 1
    assert result.policies["backoff_full_jitter"].stuck_runs == 0


def test_metrics_are_summarized_over_runs(occ: Scenario) -> None:
    result = run_experiment(occ, occ.resolve({"clients": 4}), ["none"], [0, 1, 2], workers=1)
    summary = result.policies["none"]
    runs = summary.results
    assert summary.metrics["mean_calls"] == pytest.approx(sum(r.metrics["calls"] for r in runs) / 3)
    assert summary.metrics["mean_completion_ms"] == pytest.approx(
        sum(r.metrics["completion_ms"] for r in runs) / 3
    )


def test_to_json_is_strict_json_with_nan_as_null(collapse: Scenario) -> None:
    params = collapse.resolve({"spike_s": 5, **SHORT})
    result = run_experiment(collapse, params, ["no_backoff"], [0], workers=1)
    assert math.isnan(result.policies["no_backoff"].results[0].metrics["time_to_recover_s"])
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    policy = data["policies"]["no_backoff"]
    assert policy["metrics"]["time_to_recover_s"] is None
    assert set(policy) == {
        "runs",
        "stuck_runs",
        "stuck_probability",
        "ci95",
        "metrics",
        "trace_hashes",
    }
    assert data["seeds"] == [0]
    assert data["scenario"] == "simple-collapse"


def test_progress_is_reported_after_every_run(occ: Scenario) -> None:
    calls: list[tuple[int, int]] = []
    run_experiment(
        occ,
        occ.resolve({"clients": 3}),
        ["none", "full_jitter"],
        [0, 1, 2],
        workers=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 6) for i in range(1, 7)]


def test_results_are_in_policy_then_seed_order(occ: Scenario) -> None:
    result = run_experiment(
        occ, occ.resolve({"clients": 3}), ["full_jitter", "none"], [5, 2, 9], workers=2
    )
    assert list(result.policies) == ["full_jitter", "none"]
    for name, summary in result.policies.items():
        assert [(r.policy, r.seed) for r in summary.results] == [(name, s) for s in (5, 2, 9)]


@pytest.mark.parametrize(
    ("policies", "seeds", "workers", "field"),
    [
        ([], [0], 1, "policies"),
        (["none"], [], 1, "seeds"),
        (["bogus"], [0], 1, "policy"),
        (["none"], [0], 0, "workers"),
    ],
)
def test_invalid_experiments_are_config_errors(
    occ: Scenario, policies: list[str], seeds: list[int], workers: int, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        run_experiment(occ, occ.resolve(), policies, seeds, workers=workers)
    assert info.value.field == field


def test_a_policy_named_twice_is_not_counted_twice(occ: Scenario) -> None:
    params = occ.resolve({"clients": 3})
    try:
        result = run_experiment(occ, params, ["none", "none"], [0, 1], workers=1)
    except ConfigError:
        return  # refusing duplicates is acceptable too
    summary = result.policies["none"]
    assert summary.runs == 2
    assert len(summary.trace_hashes) == 2
