"""Sweep summaries on a surface known exactly: cells, tipping boundary, paired differences."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweep_fixtures import SEEDS, Ramp

from stormproof.errors import ConfigError
from stormproof.sim.backends import LocalBackend
from stormproof.sim.stats import percentile, wilson_interval
from stormproof.sim.sweep import (
    SweepResult,
    paired_difference_interval,
    parse_axis,
    plan_sweep,
    run_sweep,
)


def sweep(*grid: str, overrides: dict[str, float] | None = None) -> SweepResult:
    plan = plan_sweep(Ramp(), [parse_axis(g) for g in grid], None, SEEDS, overrides)
    return run_sweep(plan, LocalBackend(1))


@pytest.fixture(scope="module")
def surface() -> SweepResult:
    # P(stuck | plain) = min(x * y, 10) / 10 over seeds 0..9
    return sweep("x=1:4:1", "y=1,2")


def test_cells_count_stuck_seeds_with_wilson_intervals(surface: SweepResult) -> None:
    for index, point in enumerate(surface.points):
        cell = surface.cells["plain"][index]
        stuck = min(int(point["x"] * point["y"]), 10)
        assert cell.point == point
        assert (cell.runs, cell.stuck_runs) == (10, stuck)
        assert cell.stuck_probability == stuck / 10
        assert cell.ci95 == wilson_interval(stuck, 10)
        never = surface.cells["never"][index]
        assert never.stuck_runs == 0 and never.recovered_runs == 10


def test_time_to_recover_is_over_recovered_runs_only(surface: SweepResult) -> None:
    cell = surface.cells["plain"][surface.points.index({"x": 3, "y": 2})]
    recovered = [6.0, 7.0, 8.0, 9.0]  # seeds 0..5 are stuck and never recover
    assert cell.recovered_runs == 4
    assert cell.recovery_mean_s == pytest.approx(7.5)
    assert cell.recovery_p50_s == percentile(recovered, 0.5)
    assert cell.recovery_p90_s == percentile(recovered, 0.9)
    assert cell.metrics["x"] == 3


def test_cells_where_nothing_recovers_have_no_recovery_time() -> None:
    result = sweep("x=10")
    cell = result.cells["plain"][0]
    assert cell.stuck_runs == 10 and cell.recovered_runs == 0
    assert (cell.recovery_mean_s, cell.recovery_p50_s, cell.recovery_p90_s) == (None, None, None)
    assert cell.to_json()["metrics"]["time_to_recover_s"] is None


def test_boundary_interpolates_the_50_percent_crossing_along_each_axis(
    surface: SweepResult,
) -> None:
    lines = {(line.axis, tuple(line.at.values())): line for line in surface.boundary("plain")}
    assert len(lines) == 2 + 4  # two lines along x (y = 1, 2), four along y (x = 1..4)
    # y = 1: 10 % .. 40 %, never reaches 50 %
    assert lines["x", (1,)].crossings == ()
    assert (lines["x", (1,)].low, lines["x", (1,)].high) == (0.1, 0.4)
    # y = 2: 20, 40, 60, 80 % -> crosses half-way between x = 2 and 3
    (crossing,) = lines["x", (2,)].crossings
    assert crossing.value == pytest.approx(2.5) and crossing.rising
    # along y (values 1, 2): x = 3 goes 30 -> 60 %, x = 4 goes 40 -> 80 %
    assert lines["y", (3,)].crossings[0].value == pytest.approx(1 + 2 / 3)
    assert lines["y", (4,)].crossings[0].value == pytest.approx(1.25)
    assert lines["y", (1,)].crossings == lines["y", (2,)].crossings == ()
    assert all(line.crossings == () and line.high == 0 for line in surface.boundary("never"))


def test_boundary_reports_falling_crossings_and_a_grid_value_at_exactly_half() -> None:
    result = sweep("x=1:5:1", overrides={"invert": 1, "y": 1.25})
    # P(stuck) = 1 - min(1.25 x, 10) / 10: 87.5, 75, 62.5, 50, 37.5 %
    (crossing,) = result.boundary("plain")[0].crossings
    assert crossing.value == 4 and not crossing.rising


def test_boundary_level_must_be_a_probability(surface: SweepResult) -> None:
    with pytest.raises(ConfigError) as info:
        surface.boundary("plain", level=1.0)
    assert info.value.field == "level"


def test_three_axes_give_lines_for_every_combination() -> None:
    result = sweep("x=1,2", "y=1,2,3", "z=0,1")
    lines = result.boundary("plain")
    assert sum(1 for line in lines if line.axis == "x") == 3 * 2
    assert sum(1 for line in lines if line.axis == "y") == 2 * 2
    assert sum(1 for line in lines if line.axis == "z") == 2 * 3
    along_z = [line for line in lines if line.axis == "z"]
    assert all(line.low == line.high for line in along_z)  # z has no effect
    assert {tuple(sorted(line.at)) for line in along_z} == {("x", "y")}


def test_difference_is_paired_by_seed(surface: SweepResult) -> None:
    diffs = surface.difference("never", "plain")
    for diff, point in zip(diffs, surface.points, strict=True):
        stuck = min(int(point["x"] * point["y"]), 10)
        assert diff.point == point
        assert diff.difference == -stuck / 10
        assert (diff.only_policy, diff.only_baseline) == (0, stuck)
        assert diff.ci95[0] <= diff.difference <= diff.ci95[1]
    assert diffs[-1].ci95[1] < 0  # 8 of 10 seeds rescued: clearly better
    with pytest.raises(ConfigError):
        surface.difference("nope", "plain")


@given(
    both=st.integers(0, 30),
    only_a=st.integers(0, 30),
    only_b=st.integers(0, 30),
    neither=st.integers(0, 30),
)
def test_paired_interval_contains_the_estimate(
    both: int, only_a: int, only_b: int, neither: int
) -> None:
    n = both + only_a + only_b + neither
    if n == 0:
        return
    low, high = paired_difference_interval(both, only_a, only_b, neither)
    estimate = (only_a - only_b) / n
    assert -1.0 <= low <= estimate <= high <= 1.0
    # swapping the policies mirrors the interval
    mirrored = paired_difference_interval(both, only_b, only_a, neither)
    assert mirrored == pytest.approx((-high, -low))


def test_paired_interval_without_correlation_is_newcombes_independent_one() -> None:
    # both * neither == only_a * only_b -> phi = 0: the square-and-add of the Wilson limits
    both, only_a, only_b, neither = 2, 4, 1, 2
    n = 9
    p1, p2 = 6 / n, 3 / n
    l1, u1 = wilson_interval(6, n)
    l2, u2 = wilson_interval(3, n)
    expected = (
        p1 - p2 - math.hypot(p1 - l1, u2 - p2),
        p1 - p2 + math.hypot(u1 - p1, p2 - l2),
    )
    assert paired_difference_interval(both, only_a, only_b, neither) == pytest.approx(expected)


def test_paired_interval_narrows_with_positive_correlation() -> None:
    # the same marginals (12 / 20 vs 8 / 20); discordant pairs only when needed
    correlated = paired_difference_interval(8, 4, 0, 8)
    independent_like = paired_difference_interval(4, 8, 4, 4)
    assert correlated[1] - correlated[0] < independent_like[1] - independent_like[0]
    assert correlated[0] > 0  # 4 seeds worse, none better: significant when paired


def test_paired_interval_rejects_no_pairs() -> None:
    with pytest.raises(ConfigError):
        paired_difference_interval(0, 0, 0, 0)


def test_to_json_is_strict_json(surface: SweepResult) -> None:
    data = json.loads(json.dumps(surface.to_json(), allow_nan=False))
    assert data["scenario"] == "ramp"
    assert data["axes"] == {"x": [1, 2, 3, 4], "y": [1, 2]}
    assert data["policies"] == ["plain", "never"]
    assert data["runs"] == 8 * 2 * 10
    assert len(data["cells"]["plain"]) == 8
    assert data["cells"]["plain"][7]["stuck_runs"] == 8
    assert list(data["differences"]) == ["never - plain"]
    crossings = [c for line in data["boundary"]["plain"] for c in line["crossings"]]
    assert {round(c["value"], 4) for c in crossings} == {2.5, round(1 + 2 / 3, 4), 1.25}
    assert len(data["digest"]) == 64
