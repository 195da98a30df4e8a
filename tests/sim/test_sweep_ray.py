"""The Ray backend gives exactly the local results (a local Ray instance, started here)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stormproof.sim import scenarios
from stormproof.sim.backends import LocalBackend, RayBackend
from stormproof.sim.sweep import SweepPlan, SweepResult, parse_axis, plan_sweep, run_sweep

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'stormproof[ray]')")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[ModuleType]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def plan() -> SweepPlan:
    # Short horizon, two spike lengths around the tipping point, two policies, four seeds.
    return plan_sweep(
        scenarios.get("simple-collapse"),
        [parse_axis("spike_s=4,5")],
        ["no_backoff", "backoff_full_jitter"],
        [0, 1, 2, 3],
        {"horizon": 40, "late_start": 30},
    )


@pytest.fixture(scope="module")
def local(plan: SweepPlan) -> SweepResult:
    return run_sweep(plan, LocalBackend(2))


def runs(result: SweepResult) -> list[tuple[Any, ...]]:
    rows = []
    for r in result.runs:
        metrics = sorted((k, "nan" if math.isnan(v) else v) for k, v in r.metrics.items())
        rows.append((r.point, r.policy, r.seed, r.stuck, r.trace_hash, *metrics))
    return rows


def test_ray_results_are_identical_to_the_local_pool(
    local_ray: ModuleType, plan: SweepPlan, local: SweepResult
) -> None:
    for batch_size in (1, 5):
        on_ray = run_sweep(plan, RayBackend(), batch_size=batch_size)
        assert runs(on_ray) == runs(local)
        assert on_ray.to_json() == local.to_json()
        assert on_ray.digest() == local.digest()
    # not trivially equal: the no-backoff runs at 5 s get stuck, the jittered ones do not
    assert local.cells["no_backoff"][1].stuck_runs > 0
    assert local.cells["backoff_full_jitter"][1].stuck_runs == 0
    assert local_ray.is_initialized()  # an instance it did not start is left running


def test_a_sweep_started_locally_resumes_on_ray(
    local_ray: ModuleType, plan: SweepPlan, local: SweepResult, tmp_path: Path
) -> None:
    resume = tmp_path / "sweep.jsonl"

    def stop_half_way(done: int, total: int) -> None:
        if done >= total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, LocalBackend(1), batch_size=4, resume=resume, progress=stop_half_way)
    assert len(resume.read_text().splitlines()) == 1 + plan.total_runs // 2
    resumed = run_sweep(plan, RayBackend(), batch_size=2, resume=resume)
    assert runs(resumed) == runs(local)
    assert len(resume.read_text().splitlines()) == 1 + plan.total_runs
