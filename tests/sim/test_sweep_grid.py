"""Sweep grids and plans: parsing, validation, the order of runs, common random numbers."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweep_fixtures import Ramp

from stormproof.errors import ConfigError
from stormproof.sim.sweep import Axis, parse_axis, plan_sweep


def test_range_includes_the_stop_value() -> None:
    assert parse_axis("spike_s=1:6:1") == Axis("spike_s", (1, 2, 3, 4, 5, 6))
    assert parse_axis(" rate = 30:50:10 ") == Axis("rate", (30, 40, 50))
    assert parse_axis("x=0:1:0.3").values == (0, 0.3, 0.6, 0.9)  # 1 is not on a step


def test_range_values_are_tidy_decimals() -> None:
    assert parse_axis("x=0:0.5:0.1").values == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def test_list_values_are_sorted() -> None:
    assert parse_axis("rate=50,30,40").values == (30, 40, 50)
    assert parse_axis("rate=7").values == (7,)


@given(
    start=st.integers(-1000, 1000),
    count=st.integers(1, 200),
    step=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.5, 3.0]),
)
def test_ranges_have_every_step_and_no_more(start: int, count: int, step: float) -> None:
    stop = start + (count - 1) * step
    values = parse_axis(f"v={start}:{stop!r}:{step!r}").values
    assert len(values) == count
    assert values[0] == start
    assert math.isclose(values[-1], stop, rel_tol=1e-9, abs_tol=1e-9)
    assert all(b > a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("spike_s", "grid"),
        ("=1,2", "grid"),
        ("x=", "grid"),
        ("x=1:2", "x"),
        ("x=1:2:0", "x"),
        ("x=1:2:-1", "x"),
        ("x=3:1:1", "x"),
        ("x=a,b", "x"),
        ("x=1,nan", "x"),
        ("x=1,1", "x"),
        ("x=0:1e9:1", "x"),
    ],
)
def test_bad_grids_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_axis(text)
    assert info.value.field == field


def test_plan_orders_runs_by_point_policy_seed_with_common_seeds() -> None:
    plan = plan_sweep(Ramp(), [parse_axis("x=1,2"), parse_axis("y=1:3:1")], None, [4, 2])
    assert plan.points[:4] == (
        {"x": 1, "y": 1},
        {"x": 1, "y": 2},
        {"x": 1, "y": 3},
        {"x": 2, "y": 1},
    )
    assert plan.policies == ("plain", "never")
    assert plan.total_runs == 6 * 2 * 2 == len(plan.runs())
    runs = plan.runs()
    assert [(r.point, r.policy, r.seed) for r in runs[:4]] == [
        (0, "plain", 4),
        (0, "plain", 2),
        (0, "never", 4),
        (0, "never", 2),
    ]
    # the same seeds for every grid point and policy: common random numbers
    for point in range(len(plan.points)):
        for policy in plan.policies:
            assert [r.seed for r in runs if (r.point, r.policy) == (point, policy)] == [4, 2]
    assert runs[-1].params == {"x": 2, "y": 3, "z": 0, "invert": 0, "cap": 100}
    assert plan.base == {"z": 0, "invert": 0, "cap": 100}


def test_plan_without_axes_is_one_point() -> None:
    plan = plan_sweep(Ramp(), [], ["plain"], [0], {"x": 3})
    assert plan.points == ({},)
    assert plan.params[0]["x"] == 3


def test_integer_parameters_are_parsed_by_the_scenario() -> None:
    plan = plan_sweep(Ramp(), [parse_axis("invert=0,1")], ["plain"], [0])
    assert plan.axes[0].values == (0, 1)
    assert all(isinstance(v, int) for v in plan.axes[0].values)


@pytest.mark.parametrize(
    ("axes", "policies", "seeds", "overrides", "field"),
    [
        (["bogus=1,2"], None, [0], None, "bogus"),
        (["x=-1,2"], None, [0], None, "x"),
        (["invert=0,0.5"], None, [0], None, "invert"),
        (["x=1,2"], None, [0], {"x": 3}, "x"),
        (["x=1,2"], ["nope"], [0], None, "policy"),
        (["x=1,2"], ["plain", "plain"], [0], None, "policies"),
        (["x=1,2"], None, [], None, "seeds"),
        (["x=1,2"], None, [1, 1], None, "seeds"),
        (["x=1,2"], None, [-1], None, "seeds"),
        (["x=1,200"], None, [0], None, "cap"),  # the scenario's own cross-check, per point
    ],
)
def test_bad_plans_name_the_field(
    axes: list[str],
    policies: list[str] | None,
    seeds: list[int],
    overrides: dict[str, float] | None,
    field: str,
) -> None:
    with pytest.raises(ConfigError) as info:
        plan_sweep(Ramp(), [parse_axis(a) for a in axes], policies, seeds, overrides)
    assert info.value.field == field


def test_an_axis_may_be_swept_once() -> None:
    with pytest.raises(ConfigError) as info:
        plan_sweep(Ramp(), [parse_axis("x=1,2"), parse_axis("x=3")], None, [0])
    assert info.value.field == "grid"
