"""run_sweep: the same results on any number of workers and batch sizes, and resuming."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sweep_fixtures import SEEDS, Ramp

from stormproof.errors import ConfigError
from stormproof.sim import scenarios
from stormproof.sim.backends import LocalBackend, get_backend
from stormproof.sim.backends.base import RunRecord
from stormproof.sim.sweep import SweepPlan, SweepResult, parse_axis, plan_sweep, run_sweep

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Counting:
    """A serial backend that counts the runs it executes (test double)."""

    runs: int = 0
    tasks: list[int] = field(default_factory=list)
    name: str = "counting"
    parallelism: int = 1

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        # Completion order reversed, to show the result does not depend on it.
        for index in reversed(range(len(items))):
            self.runs += len(items[index].runs)  # type: ignore[attr-defined]
            self.tasks.append(len(items[index].runs))  # type: ignore[attr-defined]
            yield index, fn(items[index])


def comparable(records: Sequence[RunRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            r.point,
            r.policy,
            r.seed,
            r.stuck,
            {k: "nan" if math.isnan(v) else v for k, v in r.metrics.items()},
            r.trace_hash,
        )
        for r in records
    ]


def same(a: SweepResult, b: SweepResult) -> None:
    assert comparable(a.runs) == comparable(b.runs)
    assert a.to_json() == b.to_json()
    assert a.digest() == b.digest()


@pytest.fixture(scope="module")
def collapse_plan() -> SweepPlan:
    scenario = scenarios.get("simple-collapse")
    return plan_sweep(
        scenario,
        [parse_axis("spike_s=4,5")],
        ["no_backoff", "backoff_full_jitter"],
        [0, 1, 2],
        {"horizon": 40, "late_start": 30},
    )


def ramp_plan() -> SweepPlan:
    return plan_sweep(Ramp(), [parse_axis("x=1:4:1"), parse_axis("y=1,2")], None, SEEDS)


def test_simple_collapse_is_identical_in_process_and_on_a_pool(collapse_plan: SweepPlan) -> None:
    serial = run_sweep(collapse_plan, LocalBackend(1))
    pooled = run_sweep(collapse_plan, LocalBackend(2), batch_size=1)
    same(serial, pooled)
    assert [(r.point, r.policy, r.seed) for r in pooled.runs] == [
        (s.point, s.policy, s.seed) for s in collapse_plan.runs()
    ]
    # the workload really differs between points and policies: not identical by accident
    assert len({r.trace_hash for r in serial.runs}) == len(serial.runs)


def test_batch_size_and_completion_order_do_not_change_results() -> None:
    plan = ramp_plan()
    reference = run_sweep(plan, LocalBackend(1))
    for size in (1, 3, 7, 1000):
        backend = Counting()
        same(reference, run_sweep(plan, backend, batch_size=size))
        assert backend.runs == plan.total_runs
        assert max(backend.tasks) == min(size, plan.total_runs)


def test_default_batches_are_several_per_worker_and_capped() -> None:
    plan = ramp_plan()  # 160 runs
    backend = Counting(parallelism=2)
    run_sweep(plan, backend)
    assert backend.tasks and max(backend.tasks) == 16  # 160 / (4 * 2) = 20, capped at 16


def test_progress_counts_runs_after_every_batch() -> None:
    calls: list[tuple[int, int]] = []
    run_sweep(
        ramp_plan(), LocalBackend(1), batch_size=50, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(0, 160), (50, 160), (100, 160), (150, 160), (160, 160)]


def interrupt_after(runs: int) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        if done >= runs:
            raise KeyboardInterrupt

    return progress


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path: Path) -> None:
    plan = ramp_plan()
    resume = tmp_path / "sweep.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, LocalBackend(1), batch_size=10, resume=resume, progress=interrupt_after(80))
    lines = resume.read_text().splitlines()
    assert json.loads(lines[0])["scenario"] == "ramp"
    assert len(lines) == 1 + 80  # the header and the first half, batch by batch

    backend = Counting()
    resumed = run_sweep(plan, backend, batch_size=10, resume=resume)
    assert backend.runs == 80  # only the missing half ran
    same(resumed, run_sweep(plan, LocalBackend(1)))
    assert len(resume.read_text().splitlines()) == 1 + 160

    again = Counting()
    same(resumed, run_sweep(plan, again, resume=resume))
    assert again.runs == 0  # everything was already there


def test_resume_on_a_pool_matches_a_full_run(tmp_path: Path, collapse_plan: SweepPlan) -> None:
    resume = tmp_path / "collapse.jsonl"
    half = collapse_plan.total_runs // 2
    with pytest.raises(KeyboardInterrupt):
        run_sweep(
            collapse_plan,
            LocalBackend(2),
            batch_size=2,
            resume=resume,
            progress=interrupt_after(half),
        )
    saved = len(resume.read_text().splitlines()) - 1
    assert half <= saved < collapse_plan.total_runs
    resumed = run_sweep(collapse_plan, LocalBackend(2), batch_size=2, resume=resume)
    same(resumed, run_sweep(collapse_plan, LocalBackend(1)))


def test_a_half_written_last_line_is_dropped_and_rerun(tmp_path: Path) -> None:
    plan = ramp_plan()
    resume = tmp_path / "sweep.jsonl"
    full = run_sweep(plan, LocalBackend(1), resume=resume)
    text = resume.read_text()
    cut = text[: text.rindex("\n", 0, len(text) - 1) + 1] + text.splitlines()[-1][:20]
    resume.write_text(cut)
    backend = Counting()
    same(full, run_sweep(plan, backend, resume=resume))
    assert backend.runs == 1
    assert resume.read_text() == text


def test_a_larger_sweep_reuses_the_runs_of_a_smaller_one(tmp_path: Path) -> None:
    resume = tmp_path / "sweep.jsonl"
    small = plan_sweep(Ramp(), [parse_axis("x=1,2")], ["plain"], [0, 1, 2])
    run_sweep(small, LocalBackend(1), resume=resume)
    large = plan_sweep(Ramp(), [parse_axis("x=1,2,3")], ["plain"], [0, 1, 2, 3])
    backend = Counting()
    same(run_sweep(large, backend, resume=resume), run_sweep(large, LocalBackend(1)))
    assert backend.runs == large.total_runs - small.total_runs


@pytest.mark.parametrize(
    "change",
    [
        lambda real: json.dumps({**real, "version": "0.0.0-other"}),
        lambda real: json.dumps({**real, "scenario": "occ-jitter"}),
        lambda real: json.dumps({**real, "stormproof_sweep": 2}),
        lambda real: json.dumps({"something": "else"}),
        lambda real: "not json",
    ],
    ids=["version", "scenario", "format", "other-json", "not-json"],
)
def test_a_resume_file_of_another_sweep_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], str]
) -> None:
    plan = ramp_plan()
    resume = tmp_path / "sweep.jsonl"
    run_sweep(plan, LocalBackend(1), resume=resume)
    lines = resume.read_text().splitlines()
    resume.write_text("\n".join([change(json.loads(lines[0])), *lines[1:]]) + "\n")
    with pytest.raises(ConfigError) as info:
        run_sweep(plan, LocalBackend(1), resume=resume)
    assert info.value.field == "resume"


def test_a_different_base_parameter_is_refused(tmp_path: Path) -> None:
    resume = tmp_path / "sweep.jsonl"
    run_sweep(plan_sweep(Ramp(), [parse_axis("x=1,2")], None, [0]), LocalBackend(1), resume=resume)
    other = plan_sweep(Ramp(), [parse_axis("x=1,2")], None, [0], {"y": 2})
    with pytest.raises(ConfigError, match="base"):
        run_sweep(other, LocalBackend(1), resume=resume)


def test_a_corrupt_record_is_refused(tmp_path: Path) -> None:
    plan = ramp_plan()
    resume = tmp_path / "sweep.jsonl"
    run_sweep(plan, LocalBackend(1), resume=resume)
    lines = resume.read_text().splitlines()
    lines[3] = '{"point": 1}'
    resume.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="line 4"):
        run_sweep(plan, LocalBackend(1), resume=resume)


def test_get_backend_validates() -> None:
    assert get_backend("local", workers=3).parallelism == 3
    assert get_backend("ray", workers=2).parallelism == 2
    assert get_backend("ray", address="ray://head:10001").parallelism is None
    for kwargs, field_name in (
        ({"name": "dask"}, "backend"),
        ({"name": "local", "address": "ray://x"}, "address"),
        ({"name": "ray", "address": "ray://x", "workers": 2}, "workers"),
        ({"name": "local", "workers": 0}, "workers"),
        ({"name": "ray", "address": " "}, "address"),
    ):
        with pytest.raises(ConfigError) as info:
            get_backend(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field_name


def test_ray_backend_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from stormproof.sim.backends import RayBackend

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r"pip install 'stormproof\[ray\]'"):
        run_sweep(ramp_plan(), RayBackend())
