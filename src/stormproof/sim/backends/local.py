"""The local backend: this process, or a pool of worker processes on this machine.

The same approach as :func:`stormproof.sim.experiment.run_experiment`: runs are independent, so
they go to a :class:`~concurrent.futures.ProcessPoolExecutor`. One worker runs everything in the
calling process, which is what tests and profilers want.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from stormproof._validate import int_at_least

__all__ = ["LocalBackend"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """Run tasks on ``workers`` processes (``None``: one per CPU; ``1``: in this process)."""

    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None:
            int_at_least("workers", self.workers, 1)

    @property
    def name(self) -> str:
        """``local``."""
        return "local"

    @property
    def parallelism(self) -> int:
        """How many tasks run at once."""
        return self.workers if self.workers is not None else (os.cpu_count() or 1)

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Apply ``fn`` to every item; yield ``(index, result)`` as each completes."""
        if self.parallelism == 1 or len(items) <= 1:
            for index, item in enumerate(items):
                yield index, fn(item)
            return
        pool = ProcessPoolExecutor(max_workers=min(self.parallelism, len(items)))
        try:
            pending: dict[Future[R], int] = {
                pool.submit(fn, item): index for index, item in enumerate(items)
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                # Report in submission order among those done together, so a run is reproducible
                # to the extent the scheduling allows (the final results never depend on it).
                for future in sorted(done, key=pending.__getitem__):
                    index = pending.pop(future)
                    yield index, future.result()
        finally:
            # An interrupted sweep (Ctrl-C, or the consumer closing us) drops what has not started.
            pool.shutdown(wait=True, cancel_futures=True)
