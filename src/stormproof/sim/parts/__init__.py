"""Reusable simulation parts: arrivals, clients, servers, links, load balancers."""

from stormproof.sim.parts.arrivals import PiecewisePoisson
from stormproof.sim.parts.balancer import LoadBalancer
from stormproof.sim.parts.client import ClosedLoopClient, OpenLoopClient
from stormproof.sim.parts.network import Link
from stormproof.sim.parts.server import LinearSlowdown, Server

__all__ = [
    "ClosedLoopClient",
    "LinearSlowdown",
    "Link",
    "LoadBalancer",
    "OpenLoopClient",
    "PiecewisePoisson",
    "Server",
]
