"""Reusable simulation parts: arrival processes, clients, servers."""

from stormproof.sim.parts.arrivals import PiecewisePoisson
from stormproof.sim.parts.client import OpenLoopClient
from stormproof.sim.parts.server import LinearSlowdown, Server

__all__ = ["LinearSlowdown", "OpenLoopClient", "PiecewisePoisson", "Server"]
