"""What a backend runs: batches of independent simulation runs, and the backend protocol.

A backend only maps a picklable top-level function over a list of items on some workers and hands
back ``(index, result)`` pairs as they complete, in whatever order that is. Everything that must
be reproducible -- which runs exist, their seeds, the order results are reported in -- is decided
by the caller before anything is sent, so the worker that ran an item cannot change its result.

The function is a parameter (not hard-wired to :func:`run_batch`) so that other estimators, such
as a rare-event splitting estimator, can later use the same local and Ray backends for their own
kind of task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from stormproof.sim.scenario import Scenario

__all__ = ["Backend", "Batch", "RunRecord", "RunSpec", "run_batch"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run to do: the grid point's index and full parameters, a policy and a seed."""

    point: int
    params: dict[str, float]
    policy: str
    seed: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a sweep keeps of a run: no time series, so that a result is a few hundred bytes."""

    point: int
    policy: str
    seed: int
    stuck: bool
    metrics: dict[str, float]
    trace_hash: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Runs sent to a worker as one task, so the per-task cost is paid once for all of them."""

    scenario: Scenario
    runs: tuple[RunSpec, ...]


def run_batch(batch: Batch) -> list[RunRecord]:
    """Run every run of ``batch`` in order (in whichever process this is called)."""
    records = []
    for spec in batch.runs:
        result = batch.scenario.run(spec.params, spec.policy, spec.seed)
        records.append(
            RunRecord(
                point=spec.point,
                policy=spec.policy,
                seed=spec.seed,
                stuck=result.stuck,
                metrics=dict(result.metrics),
                trace_hash=result.trace_hash,
            )
        )
    return records


class Backend(Protocol):
    """Somewhere to run independent tasks: this process, a process pool, a Ray cluster."""

    @property
    def name(self) -> str:
        """A short name for reports and benchmarks (``local``, ``ray``)."""
        ...

    @property
    def parallelism(self) -> int | None:
        """How many tasks run at once, if known before starting (a remote cluster: ``None``)."""
        ...

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Apply ``fn`` to every item; yield ``(index in items, result)`` as each completes.

        Closing the iterator early (an interrupted sweep) cancels the tasks not yet started.
        """
        ...
