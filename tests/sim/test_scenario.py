"""Scenario parameters and policies, the catalogue, and the simple-collapse model's metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from stormproof.errors import ConfigError
from stormproof.sim import scenarios
from stormproof.sim.scenario import Param, RunResult, Scenario

# A short simple-collapse run: spike at 20 s, judged over [30, 40).
SHORT = {"horizon": 40, "late_start": 30}


@pytest.fixture(scope="module")
def collapse() -> Scenario:
    return scenarios.get("simple-collapse")


@pytest.fixture(scope="module")
def occ() -> Scenario:
    return scenarios.get("occ-jitter")


def _normalized(text: str) -> str:
    return " ".join(text.split())


# -- the catalogue ----------------------------------------------------------------------------


def test_catalogue_names_are_sorted_and_get_returns_fresh_instances() -> None:
    names = scenarios.names()
    assert names == sorted(names)
    assert {"occ-jitter", "simple-collapse", "dynamodb-dns-2025", "ebs-2011"} <= set(names)
    for name in scenarios.names():
        first, second = scenarios.get(name), scenarios.get(name)
        assert first.name == name
        assert first is not second


def test_unknown_scenario_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        scenarios.get("no-such-scenario")
    assert info.value.field == "scenario"
    message = str(info.value)
    assert "no-such-scenario" in message
    assert "occ-jitter" in message and "simple-collapse" in message


@pytest.mark.parametrize("name", ["occ-jitter", "simple-collapse"])
def test_every_parameter_has_meaning_and_provenance_and_valid_default(name: str) -> None:
    scenario = scenarios.get(name)
    names = [p.name for p in scenario.params]
    assert len(names) == len(set(names))
    for param in scenario.params:
        assert param.description and param.source
        assert param.parse(param.default) == param.default
    assert scenario.policies and scenario.stuck_rule and scenario.description


# -- resolve -----------------------------------------------------------------------------------


def test_resolve_without_overrides_gives_the_defaults(collapse: Scenario) -> None:
    assert collapse.resolve() == {p.name: p.default for p in collapse.params}
    assert collapse.resolve({}) == collapse.resolve(None)


def test_resolve_parses_strings_and_numbers(collapse: Scenario, occ: Scenario) -> None:
    params = collapse.resolve({"spike_s": "2.5", "rate": 30})
    assert params["spike_s"] == 2.5
    assert params["rate"] == 30.0
    assert params["horizon"] == 80  # untouched
    clients = occ.resolve({"clients": "7"})["clients"]
    assert clients == 7 and isinstance(clients, int)
    assert occ.resolve({"clients": 7.0})["clients"] == 7


def test_unknown_parameter_lists_the_valid_names(occ: Scenario) -> None:
    with pytest.raises(ConfigError) as info:
        occ.resolve({"bogus": "1"})
    assert info.value.field == "bogus"
    message = str(info.value)
    assert "occ-jitter" in message
    assert "base_ms, cap_ms, clients, hop_mean_ms, hop_sd_ms" in message


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"rate": -1}, "rate", ">= 0"),
        ({"timeout": "0"}, "timeout", ">= 0.001"),
        ({"max_attempts": 0}, "max_attempts", ">= 1"),
        ({"horizon": 0.5}, "horizon", ">= 1"),
    ],
)
def test_out_of_range_values_name_the_parameter(
    collapse: Scenario, overrides: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as info:
        collapse.resolve(overrides)  # type: ignore[arg-type]
    assert info.value.field == field
    assert rule in str(info.value)


def test_maximum_is_enforced(occ: Scenario) -> None:
    assert occ.resolve({"clients": 100_000})["clients"] == 100_000
    with pytest.raises(ConfigError) as info:
        occ.resolve({"clients": 100_001})
    assert info.value.field == "clients"
    assert "<= 100000" in str(info.value)


@pytest.mark.parametrize("value", ["abc", "", "1,5", "nan", "inf", "-inf", math.nan, math.inf])
def test_non_numeric_or_non_finite_values_name_the_parameter(
    collapse: Scenario, value: object
) -> None:
    with pytest.raises(ConfigError) as info:
        collapse.resolve({"rate": value})  # type: ignore[dict-item]
    assert info.value.field == "rate"
    assert str(info.value).startswith("rate: must be")


@pytest.mark.parametrize("value", [2.5, "2.5", "3.0001"])
def test_integer_parameters_reject_fractions(collapse: Scenario, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        collapse.resolve({"max_attempts": value})  # type: ignore[dict-item]
    assert info.value.field == "max_attempts"
    assert "whole number" in str(info.value)


def test_integer_parameters_accept_whole_floats(collapse: Scenario) -> None:
    assert collapse.resolve({"max_attempts": "4.0"})["max_attempts"] == 4


def test_param_bounds_are_inclusive() -> None:
    param = Param("p", 1.0, "d", "s", minimum=0.5, maximum=2.0)
    assert param.parse("0.5") == 0.5
    assert param.parse(2.0) == 2.0
    with pytest.raises(ConfigError):
        param.parse(0.49)
    with pytest.raises(ConfigError):
        param.parse("2.01")


@pytest.mark.parametrize(
    "overrides",
    [{"late_start": 80}, {"late_start": 90}, {"horizon": 50}, {"horizon": 30, "late_start": 30}],
)
def test_simple_collapse_late_start_must_be_before_the_horizon(
    collapse: Scenario, overrides: dict[str, float]
) -> None:
    with pytest.raises(ConfigError) as info:
        collapse.resolve(overrides)
    assert info.value.field == "late_start"
    assert "horizon" in str(info.value)


def test_check_policy_lists_the_valid_policies(collapse: Scenario, occ: Scenario) -> None:
    collapse.check_policy("no_backoff")
    with pytest.raises(ConfigError) as info:
        collapse.check_policy("bogus")
    assert info.value.field == "policy"
    assert "'bogus'" in str(info.value)
    assert "no_backoff, backoff_full_jitter" in str(info.value)
    with pytest.raises(ConfigError) as info:
        occ.check_policy("no_backoff")
    assert all(p in str(info.value) for p in occ.policies)


def test_runs_with_an_unknown_policy_are_refused(collapse: Scenario) -> None:
    with pytest.raises(ConfigError):
        collapse.run(collapse.resolve(SHORT), "bogus", 0)


# -- the default summary -------------------------------------------------------------------


class _Fixed(Scenario):
    name = "fixed"
    description = "returns given metrics"
    params = ()
    policies = ("p",)
    stuck_rule = "never"

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        raise NotImplementedError


def _result(**metrics: float) -> RunResult:
    return RunResult("fixed", "p", 0, False, dict(metrics), "")


def test_default_summary_is_the_mean_ignoring_nan() -> None:
    summary = _Fixed().summarize(
        [_result(a=1.0, b=math.nan), _result(a=3.0, b=4.0), _result(a=5.0, b=math.nan)]
    )
    assert summary == {"a": 3.0, "b": 4.0}
    assert _Fixed().summarize([_result(c=math.nan)]) == {"c": None}


# -- simple-collapse runs ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["no_backoff", "backoff_full_jitter"])
@pytest.mark.parametrize("seed", [0, 1])
def test_without_a_spike_the_run_is_healthy(collapse: Scenario, policy: str, seed: int) -> None:
    result = collapse.run(collapse.resolve({"spike_s": 0, **SHORT}), policy, seed)
    assert not result.stuck
    m = result.metrics
    assert m["amplification"] == pytest.approx(1.0, abs=0.05)
    assert m["late_goodput_per_s"] == pytest.approx(40, rel=0.25)
    assert m["failures"] == 0
    assert m["wasted_work_fraction"] == 0
    assert math.isfinite(m["time_to_recover_s"]) and m["time_to_recover_s"] >= 0
    assert result.scenario == "simple-collapse" and result.policy == policy
    assert result.seed == seed
    assert result.series == {}


def test_a_stuck_run_has_no_recovery_time_and_a_storm_of_resends(collapse: Scenario) -> None:
    # at a 5 s spike without backoff seed 0 sticks (see the golden test for the statistics)
    params = collapse.resolve({"spike_s": 5, "horizon": 45, "late_start": 35})
    stuck = collapse.run(params, "no_backoff", 0)
    assert stuck.stuck
    assert math.isnan(stuck.metrics["time_to_recover_s"])
    assert stuck.metrics["late_goodput_per_s"] < params["stuck_below"]
    assert stuck.metrics["amplification"] > 2.5
    assert stuck.metrics["failures"] > 0
    healthy = collapse.run(params, "backoff_full_jitter", 0)
    assert not healthy.stuck
    assert math.isfinite(healthy.metrics["time_to_recover_s"])
    assert healthy.metrics["time_to_recover_s"] >= 0


def test_stuck_is_judged_against_stuck_below(collapse: Scenario) -> None:
    params = collapse.resolve({"spike_s": 0, "stuck_below": 1000, **SHORT})
    result = collapse.run(params, "no_backoff", 0)
    assert result.stuck  # 40/s is below the bar of 1000/s
    assert math.isnan(result.metrics["time_to_recover_s"])


def test_series_have_one_entry_per_second_of_the_horizon(collapse: Scenario) -> None:
    params = collapse.resolve({"spike_s": 1, **SHORT})
    result = collapse.run(params, "no_backoff", 3, series=True)
    assert set(result.series) >= {"requests", "attempts", "successes", "timeouts", "resends"}
    assert all(len(values) == 40 for values in result.series.values())
    late = result.series["successes"][30:40]
    assert sum(late) / 10 == pytest.approx(result.metrics["late_goodput_per_s"])
    # 40/s before the spike, 80/s during [20, 21) (seeded: deterministic)
    assert sum(result.series["requests"][:20]) / 20 == pytest.approx(40, rel=0.15)
    assert result.series["requests"][20] > 55


def test_a_spike_at_time_zero_is_modelled(collapse: Scenario) -> None:
    params = collapse.resolve(
        {"spike_start": 0, "spike_s": 10, "spike_rate": 20, "rate": 60, **SHORT}
    )
    result = collapse.run(params, "backoff_full_jitter", 0, series=True)
    requests = result.series["requests"]
    assert sum(requests[:10]) == pytest.approx(200, rel=0.25)
    assert sum(requests[10:40]) == pytest.approx(1800, rel=0.1)


def test_the_same_seed_gives_the_same_run(collapse: Scenario) -> None:
    params = collapse.resolve({"spike_s": 3, **SHORT})
    first = collapse.run(params, "backoff_full_jitter", 4)
    again = collapse.run(params, "backoff_full_jitter", 4)
    assert first == again
    assert first.trace_hash and len(first.trace_hash) == 32
