"""The DNS plan race (dynamodb-dns-2025): steps, invariants, interleaving search, scenario."""

from __future__ import annotations

import time

import pytest

from stormproof.errors import ConfigError
from stormproof.sim import scenarios
from stormproof.sim.explore import (
    ModelConfig,
    exhaustive,
    parse_choices,
    replay,
    sample,
    trace_hash,
)
from stormproof.sim.parts import dns

OUTAGE = ("empty_record", "active_plan_deleted")
ORIGINAL = ModelConfig("original")
FENCED = ModelConfig("fenced")
# A full exhaustive search of the default model never needs more steps than this (3 new plans,
# 3 Enactors x 3 pick-ups x 4 steps for 2 endpoints), so a search at this bound is complete.
BOUND = 60


# -- invariants -------------------------------------------------------------------------------


def test_initial_state_satisfies_every_invariant() -> None:
    state = dns.initial_state("original")
    assert dns.check_invariants(state) == []
    assert dns.enabled(state) == ["P"]


def test_empty_record_is_detected() -> None:
    state = dns.initial_state("original", endpoints=3)
    state.records[1].value = ()
    assert dns.empty_records(state) == [1]
    assert dns.check_invariants(state) == [("empty_record", [1])]


def test_deleted_active_plan_is_detected() -> None:
    state = dns.initial_state("original", endpoints=2)
    del state.plans[1]
    assert dns.deleted_active_plans(state) == [0, 1]
    assert dns.check_invariants(state, ("active_plan_deleted",)) == [
        ("active_plan_deleted", [0, 1])
    ]


def test_generation_regression_is_detected() -> None:
    state = dns.initial_state("original", endpoints=2)
    state.high[0] = 5
    assert dns.regressions(state) == [0]
    assert dns.check_invariants(state, ("generation_regression", "empty_record")) == [
        ("generation_regression", [0])
    ]


def test_unknown_invariant_and_bad_actor_are_config_errors() -> None:
    state = dns.initial_state("original")
    with pytest.raises(ConfigError, match="invariant"):
        dns.check_invariants(state, ("nonsense",))
    with pytest.raises(ConfigError, match="actor"):
        dns.step(state, "E9")
    with pytest.raises(ConfigError, match="no enabled step"):
        dns.step(state, "E0")  # nothing newer to pick up
    with pytest.raises(ConfigError, match="design"):
        dns.initial_state("sloppy")


def test_fenced_write_rejects_an_older_generation() -> None:
    schedule = ("P", "E0", "E0", "P", "E1", "E1", "E1", "E0")  # E0 checked 2; E1 wrote 3 first
    fenced = replay(ModelConfig("fenced", enactors=2, endpoints=1, max_generation=3), schedule)
    assert fenced.steps[-1].endswith("rejected, endpoint has 3")
    assert fenced.state.records[0].generation == 3
    assert fenced.state.stale_writes == 1
    assert fenced.violations == ()
    original = replay(ModelConfig("original", enactors=2, endpoints=1, max_generation=3), schedule)
    assert original.state.records[0].generation == 2
    assert original.violations == (("generation_regression", (0,)),)


def test_resolver_cache_serves_until_ttl() -> None:
    state = dns.initial_state("original", endpoints=1)
    cache = dns.ResolverCache(60.0)
    assert cache.resolve(0.0, state.records[0]) == dns.plan_ips(1)
    state.records[0].value = ()
    assert cache.resolve(59.0, state.records[0]) == dns.plan_ips(1)  # still cached
    assert cache.resolve(60.0, state.records[0]) == ()  # expired: the empty answer
    state.records[0].value = dns.plan_ips(1)
    assert cache.resolve(100.0, state.records[0]) == ()  # the empty answer is cached too
    assert cache.resolve(120.0, state.records[0]) == dns.plan_ips(1)


# -- search -----------------------------------------------------------------------------------


def test_original_design_race_is_found_quickly_with_a_shortest_counterexample() -> None:
    started = time.perf_counter()
    result = exhaustive(ORIGINAL, max_steps=BOUND, invariants=OUTAGE)
    assert time.perf_counter() - started < 10
    assert result.found
    example = result.counterexample
    assert example is not None
    # Plan 2 picked up and checked by a slow Enactor, plans 3 and 4 made, a fast Enactor applies
    # 4 and cleans up plans older than 4 - 1 while the slow one writes 2: 11 steps.
    assert len(example.choices) == 11
    assert {name for name, _ in example.violations} & set(OUTAGE)
    assert any("clean-up" in step for step in example.steps)
    # No shorter schedule breaks the outage invariants.
    shorter = exhaustive(ORIGINAL, max_steps=len(example.choices) - 1, invariants=OUTAGE)
    assert not shorter.found


def test_original_design_regresses_even_sooner() -> None:
    result = exhaustive(ORIGINAL, max_steps=BOUND)
    assert result.counterexample is not None
    assert result.counterexample.violations[0][0] == "generation_regression"
    assert len(result.counterexample.choices) < 11


def test_fenced_design_passes_complete_exhaustive_search() -> None:
    result = exhaustive(FENCED, max_steps=BOUND)
    assert not result.found
    assert not result.bounded  # every execution ended before the bound: the search is complete
    assert result.states > 1000


def test_fenced_design_passes_random_sampling() -> None:
    result = sample(FENCED, samples=10_000, seed=7, max_steps=BOUND)
    assert not result.found
    assert result.interleavings == 10_000


def test_random_sampling_finds_the_original_race_and_is_deterministic() -> None:
    first = sample(ORIGINAL, samples=2_000, seed=3, max_steps=BOUND, invariants=OUTAGE)
    second = sample(ORIGINAL, samples=2_000, seed=3, max_steps=BOUND, invariants=OUTAGE)
    assert first.found
    assert first == second


def test_replay_reproduces_the_counterexample_and_its_trace_hash() -> None:
    example = exhaustive(ORIGINAL, max_steps=BOUND, invariants=OUTAGE).counterexample
    assert example is not None
    again = replay(ORIGINAL, parse_choices(",".join(example.choices)), OUTAGE)
    assert again.steps == example.steps
    assert again.violations == example.violations
    assert again.trace_hash == example.trace_hash == trace_hash(example.steps)
    # The same schedule under the fenced design breaks nothing.
    fenced = replay(FENCED, example.choices)
    assert fenced.violations == ()
    assert fenced.trace_hash != example.trace_hash


def test_replay_rejects_choices_that_do_not_fit() -> None:
    with pytest.raises(ConfigError, match="nothing to do"):
        replay(ORIGINAL, ("E0",))
    with pytest.raises(ConfigError, match="no actor"):
        replay(ORIGINAL, ("P", "E7"))
    with pytest.raises(ConfigError, match="choices"):
        parse_choices("P,X1")


# -- the kernel scenario ----------------------------------------------------------------------

FAT_TAIL = {"horizon": 21_600, "tail_prob": 0.01}


def test_scenario_fat_tail_empties_records_in_original_only() -> None:
    scenario = scenarios.get("dynamodb-dns-2025")
    params = scenario.resolve(FAT_TAIL)
    seeds = range(4)
    original = [scenario.run(params, "original", seed) for seed in seeds]
    fenced = [scenario.run(params, "fenced", seed) for seed in seeds]
    assert any(run.metrics["empty_record_events"] > 0 for run in original)
    assert any(run.metrics["resolution_failure_fraction"] > 0 for run in original)
    assert any(run.stuck for run in original)
    for run in fenced:
        assert not run.stuck
        assert run.metrics["empty_record_seconds"] == 0
        assert run.metrics["empty_record_events"] == 0
        assert run.metrics["resolution_failure_fraction"] == 0
        assert run.metrics["max_generation_regression"] == 0


def test_scenario_is_deterministic_and_params_carry_provenance() -> None:
    scenario = scenarios.get("dynamodb-dns-2025")
    params = scenario.resolve({"horizon": 3_600})
    first = scenario.run(params, "original", 11)
    assert first == scenario.run(params, "original", 11)
    for param in scenario.params:
        assert param.source
    assert "empty" in scenario.stuck_rule
    with pytest.raises(ConfigError):
        scenario.run(params, "nonsense", 0)


# -- the command line -------------------------------------------------------------------------


def test_cli_explore_finds_replays_and_passes_fenced() -> None:
    import json

    from typer.testing import CliRunner

    from stormproof.cli import app

    runner = CliRunner()
    outage = ["--invariant", "empty_record", "--invariant", "active_plan_deleted"]
    found = runner.invoke(app, ["explore", "dynamodb-dns-2025", *outage, "--json"])
    assert found.exit_code == 1, found.output
    example = json.loads(found.output)["counterexample"]
    assert len(example["steps"]) == 11
    again = runner.invoke(
        app, ["explore", "dynamodb-dns-2025", "--replay", example["choices"], "--json", *outage]
    )
    assert again.exit_code == 1
    assert json.loads(again.output)["trace_hash"] == example["trace_hash"]
    fenced = runner.invoke(
        app, ["explore", "dynamodb-dns-2025", "--design", "fenced", "--samples", "500"]
    )
    assert fenced.exit_code == 0, fenced.output
    assert "no invariant broken" in fenced.output
    bad = runner.invoke(app, ["explore", "dynamodb-dns-2025", "--design", "sloppy"])
    assert bad.exit_code == 2


def test_a_time_budget_stops_the_search_and_says_so() -> None:
    from stormproof.sim import explore as search

    ticks = iter(range(10_000_000))

    def fake_clock() -> float:  # every reading is one second later
        return float(next(ticks))

    config = search.ModelConfig("fenced", 3, 2, 1, 4)
    stopped = search.exhaustive(config, budget=5.0, clock=fake_clock)
    assert not stopped.complete and not stopped.found
    assert search.exhaustive(config, budget=None).complete
    sampled = search.sample(config, samples=100, seed=1, budget=3.0, clock=fake_clock)
    assert not sampled.complete and sampled.interleavings < 100
    assert search.sample(config, samples=10, seed=1).complete
