"""The same load shapes in the simulator: one definition of a burst for both worlds.

    sim = Simulation(seed=7)
    arrivals = shape_arrivals(shape, sim, horizon=60.0)
    client = OpenLoopClient(sim, arrivals, server, policy, horizon=60.0, ...)

The simulated client called ``name`` (``"client"`` by default) then draws exactly the arrival
times that :func:`stormproof.load.shapes.arrival_times` gives the real runner for the same
seed, because both take the shape's plan from the stream ``"load.shape"`` and the arrivals from
``"<name>.arrivals"`` of the same seed.
"""

from __future__ import annotations

from stormproof.load.shapes import RatePlan, Shape
from stormproof.sim.kernel import Simulation
from stormproof.sim.parts.arrivals import PiecewisePoisson

__all__ = ["shape_arrivals", "shape_plan"]


def shape_plan(shape: Shape, sim: Simulation, horizon: float) -> RatePlan:
    """The plan ``shape`` gives for the simulation's seed over ``[0, horizon)``."""
    return shape.plan(horizon, sim.seed)


def shape_arrivals(shape: Shape, sim: Simulation, horizon: float) -> PiecewisePoisson:
    """The simulator's arrival process for ``shape`` (pass the same ``horizon`` to the client)."""
    return shape_plan(shape, sim, horizon).arrivals()
