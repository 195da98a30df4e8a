"""Analytic cross-check: the single-server retry-orbit model as a Markov chain and as a simulation.

:class:`OrbitParams` describes the model; :class:`OrbitSimulation` runs it on the kernel (no
extra needed); :class:`~stormproof.sim.analytic.ctmc.OrbitChain` solves it as a continuous-time
Markov chain with scipy.sparse (``pip install 'stormproof[analysis]'``), imported on first use
so this package stays light. See docs/analytic.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stormproof.sim.analytic.model import OrbitParams
from stormproof.sim.analytic.orbit_sim import OrbitSimulation, OrbitStats

if TYPE_CHECKING:
    from stormproof.sim.analytic.ctmc import ChainSummary, OrbitChain

__all__ = ["ChainSummary", "OrbitChain", "OrbitParams", "OrbitSimulation", "OrbitStats"]


def __getattr__(name: str) -> Any:
    if name in ("ChainSummary", "OrbitChain"):
        from stormproof.sim.analytic import ctmc

        return getattr(ctmc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
