"""One load test from start to finish: shape -> plan -> schedule -> requests -> records -> metrics.

run = await load_test(Bursts(...), RunConfig("http://127.0.0.1:8000/orders", duration=60),
                      seed=7, traffic=Traffic(duplicate_fraction=0.05))
print(run.analysis.bursts[0].time_to_recover)
Path("load.html").write_text(html_report(run))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stormproof.clock import SleepingClock
from stormproof.errors import ConfigError
from stormproof.load.metrics import LoadAnalysis, RecoveryCriteria, RequestRecord, analyze
from stormproof.load.runner import RunConfig, run_load
from stormproof.load.shapes import RatePlan, Shape, arrival_times
from stormproof.load.traffic import PlannedRequest, Traffic, plan_requests

if TYPE_CHECKING:
    import httpx

__all__ = ["LoadRun", "load_test", "prepare"]


@dataclass(frozen=True, slots=True)
class LoadRun:
    """The outcome of :func:`load_test`: what was planned, what happened, what it means."""

    target: str
    shape: str
    seed: int
    plan: RatePlan
    records: tuple[RequestRecord, ...]
    analysis: LoadAnalysis
    started_at: float
    wall_seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form: configuration, plan, metrics and every request."""
        return {
            "target": self.target,
            "shape": self.shape,
            "seed": self.seed,
            "started_at": self.started_at,
            "wall_seconds": self.wall_seconds,
            "plan": self.plan.to_json(),
            "analysis": self.analysis.to_json(),
            "records": [record.to_json() for record in self.records],
        }


def prepare(
    shape: Shape,
    *,
    duration: float,
    seed: int,
    traffic: Traffic | None = None,
    max_requests: int | None = None,
) -> tuple[RatePlan, list[PlannedRequest]]:
    """The plan and the requests of a run, decided from the seed alone (nothing is sent)."""
    if not isinstance(shape, Shape):
        raise ConfigError("shape", "must have plan(duration, seed) and describe()", shape)
    plan = shape.plan(duration, seed)
    times = arrival_times(plan, seed, limit=max_requests)
    return plan, plan_requests(times, traffic if traffic is not None else Traffic(), seed)


async def load_test(
    shape: Shape,
    config: RunConfig,
    *,
    seed: int,
    traffic: Traffic | None = None,
    criteria: RecoveryCriteria | None = None,
    clock: SleepingClock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_tick: Callable[[dict[str, int], float], None] | None = None,
    bin_width: float = 1.0,
) -> LoadRun:
    """Plan with ``seed``, drive ``config.target``, and analyse the records."""
    plan, requests = prepare(
        shape,
        duration=config.duration,
        seed=seed,
        traffic=traffic,
        max_requests=config.max_requests,
    )
    started_at = time.time()
    began = time.monotonic()
    records = await run_load(config, requests, clock=clock, transport=transport, on_tick=on_tick)
    wall = time.monotonic() - began
    return LoadRun(
        target=config.target,
        shape=shape.describe(),
        seed=seed,
        plan=plan,
        records=tuple(records),
        analysis=analyze(records, plan, criteria, bin_width=bin_width),
        started_at=started_at,
        wall_seconds=wall,
    )
