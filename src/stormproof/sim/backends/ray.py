"""The Ray backend: the same tasks on a local Ray instance or a Ray cluster.

Ray is an optional extra (``pip install 'stormproof[ray]'``) and is imported only when a sweep
actually runs on it. Each task is a whole batch of runs, so Ray's per-task cost (scheduling,
serialising the arguments and the result, about a millisecond on a local instance) is paid once
per batch instead of once per run.

If Ray is already initialised in this process (a notebook, a test), the backend uses that
instance and leaves it running; otherwise it starts or connects to one for the duration of a
sweep and shuts it down afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from stormproof._validate import int_at_least
from stormproof.errors import ConfigError

__all__ = ["RayBackend"]

T = TypeVar("T")
R = TypeVar("R")


def _ray() -> ModuleType:
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "the Ray sweep backend needs Ray: pip install 'stormproof[ray]'"
        ) from error
    return ray


@dataclass(frozen=True, slots=True)
class RayBackend:
    """Run tasks on Ray.

    Args:
        address: a cluster to connect to (``ray://head:10001`` for Ray Client, ``auto`` for the
            cluster this machine belongs to); ``None`` starts a local instance.
        workers: CPUs of a local instance (``None``: all of them); not allowed with ``address``,
            where the cluster's size decides.
    """

    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None:
            int_at_least("workers", self.workers, 1)
            if self.address is not None:
                raise ConfigError(
                    "workers", "cannot be set with address (the cluster decides)", self.workers
                )
        if self.address is not None and not self.address.strip():
            raise ConfigError("address", "must not be empty", self.address)

    @property
    def name(self) -> str:
        """``ray``."""
        return "ray"

    @property
    def parallelism(self) -> int | None:
        """The CPUs of a local instance; ``None`` for a cluster (known only once connected)."""
        if self.address is not None:
            return None
        return self.workers if self.workers is not None else (os.cpu_count() or 1)

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Apply ``fn`` to every item as Ray tasks; yield ``(index, result)`` as each completes."""
        ray = _ray()
        started_here = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR"}
            if self.address is not None:
                options["address"] = self.address
            elif self.workers is not None:
                options["num_cpus"] = self.workers
            ray.init(**options)
            started_here = True
        pending: dict[Any, int] = {}
        try:
            remote = ray.remote(num_cpus=1)(fn)
            pending = {remote.remote(item): index for index, item in enumerate(items)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    yield index, ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref)
            if started_here:
                ray.shutdown()
