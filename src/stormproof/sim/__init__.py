"""The deterministic simulator: a discrete-event kernel on virtual time with seeded streams."""

from stormproof.sim.kernel import (
    AnyOf,
    Event,
    Interrupt,
    Process,
    Simulation,
    SimulationLimitExceeded,
    stream_seed,
)

__all__ = [
    "AnyOf",
    "Event",
    "Interrupt",
    "Process",
    "Simulation",
    "SimulationLimitExceeded",
    "stream_seed",
]
