"""Where sweeps run: a local process pool or Ray, with identical results for the same seeds."""

from __future__ import annotations

from stormproof.errors import ConfigError
from stormproof.sim.backends.base import Backend, Batch, RunRecord, RunSpec, run_batch
from stormproof.sim.backends.local import LocalBackend
from stormproof.sim.backends.ray import RayBackend

__all__ = [
    "Backend",
    "Batch",
    "LocalBackend",
    "RayBackend",
    "RunRecord",
    "RunSpec",
    "get_backend",
    "run_batch",
]

NAMES = ("local", "ray")


def get_backend(name: str, *, workers: int | None = None, address: str | None = None) -> Backend:
    """The backend called ``name`` (``local`` or ``ray``); ``address`` is for Ray only."""
    if name == "local":
        if address is not None:
            raise ConfigError("address", "is only used by the ray backend", address)
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(address=address, workers=workers)
    raise ConfigError("backend", f"must be one of {', '.join(NAMES)}", name)
