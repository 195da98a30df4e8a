"""Exports: the Locust module imports and its tick() walks the stages; k6 scenarios' shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stormproof.errors import ConfigError
from stormproof.load import Bursts, Exponential, RatePlan, Steady, Uniform
from stormproof.load.export import k6_options, k6_scenarios, locust_module, locust_stages

PLAN = RatePlan(((0.0, 2.0), (3.0, 25.0), (4.5, 2.0), (8.0, 40.0)), 10.0, ((3.0, 4.5), (8.0, 10.0)))


def test_locust_stages_from_a_plan() -> None:
    assert locust_stages(PLAN) == [
        {"end": 3.0, "users": 2, "spawn_rate": 2.0},
        {"end": 4.5, "users": 25, "spawn_rate": 23.0},
        {"end": 8.0, "users": 2, "spawn_rate": 23.0},
        {"end": 10.0, "users": 40, "spawn_rate": 38.0},
    ]
    assert locust_stages(PLAN, requests_per_user=10) == [
        {"end": 3.0, "users": 1, "spawn_rate": 1.0},
        {"end": 4.5, "users": 3, "spawn_rate": 2.0},
        {"end": 8.0, "users": 1, "spawn_rate": 2.0},
        {"end": 10.0, "users": 4, "spawn_rate": 3.0},
    ]
    with pytest.raises(ConfigError, match="requests_per_user"):
        locust_stages(PLAN, requests_per_user=0)


# Runs in a child process: importing locust monkey-patches the standard library (gevent).
_TICKS = """
import json, sys, importlib.util
spec = importlib.util.spec_from_file_location("shape_module", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
shape = module.StormproofShape()
out = []
for t in json.loads(sys.argv[2]):
    shape.get_run_time = lambda t=t: t
    tick = shape.tick()
    out.append(None if tick is None else list(tick))
print(json.dumps({"stages": module.STAGES, "ticks": out, "rpu": module.REQUESTS_PER_USER}))
"""


def test_locust_module_imports_and_tick_reproduces_the_stages(tmp_path: Path) -> None:
    plan = Bursts(Uniform(20, 40), Uniform(1, 2), Exponential(2, 1, 4), idle_rate=2).plan(20, 5)
    path = tmp_path / "shape.py"
    path.write_text(locust_module(plan, requests_per_user=2.0, description="test", seed=5))
    stages = locust_stages(plan, requests_per_user=2.0)
    times = [0.0] + [s["end"] - 0.01 for s in stages] + [s["end"] for s in stages] + [25.0]
    done = subprocess.run(
        [sys.executable, "-c", _TICKS, str(path), json.dumps(times)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rpu"] == 2.0
    assert result["stages"] == [[s["end"], s["users"], s["spawn_rate"]] for s in stages]

    def expected(t: float) -> list[float] | None:
        for stage in stages:
            if t < stage["end"]:
                return [stage["users"], stage["spawn_rate"]]
        return None

    assert result["ticks"] == [expected(t) for t in times]
    assert result["ticks"][-1] is None  # the test stops after the plan


def test_k6_scenarios_step_function() -> None:
    options = k6_scenarios(PLAN)
    scenario = options["scenarios"]["stormproof"]
    assert scenario["executor"] == "ramping-arrival-rate"
    assert scenario["timeUnit"] == "1s" and scenario["startRate"] == 2
    assert scenario["preAllocatedVUs"] == 40 and scenario["maxVUs"] == 160
    assert scenario["stages"] == [
        {"duration": "0ms", "target": 2},
        {"duration": "3000ms", "target": 2},
        {"duration": "0ms", "target": 25},
        {"duration": "1500ms", "target": 25},
        {"duration": "0ms", "target": 2},
        {"duration": "3500ms", "target": 2},
        {"duration": "0ms", "target": 40},
        {"duration": "2000ms", "target": 40},
    ]
    # The stages add up to the plan's duration.
    assert sum(int(s["duration"][:-2]) for s in scenario["stages"]) == 10_000
    assert json.loads(k6_options(PLAN)) == options


def test_k6_uses_per_minute_units_for_fractional_rates() -> None:
    scenario = k6_scenarios(Steady(0.5).plan(60))["scenarios"]["stormproof"]
    assert scenario["timeUnit"] == "1m"
    assert scenario["stages"][1] == {"duration": "60000ms", "target": 30}
