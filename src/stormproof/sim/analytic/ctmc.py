"""The retry-orbit model as a continuous-time Markov chain, solved with scipy.sparse.

State ``(live, dead, orbit)``: attempts in the server whose client still waits (``live``),
attempts whose client has timed out but whose work the server still does (``dead``), and requests
waiting in the retry orbit. ``live + dead <= capacity``; ``orbit <= orbit_bound`` (truncation).
Why three counters and not the two (queue length, orbit) of a Metafor-style chain: the server keeps
working on timed-out attempts, and only live ones can time out, so the chain must know how many of
the queue are live; with processor sharing and exponential work, which one completes next is a
uniform pick, so the counts are enough (with FIFO the order of live and dead would matter).

Transitions from ``(l, d, o)`` with ``n = l + d`` (rates from :class:`OrbitParams`):

=====================================  ===========================  ===========================
event                                  rate                         to
=====================================  ===========================  ===========================
new request, room (n < K)              lambda                       (l + 1, d, o)
new request, full, retried             lambda * p                   (l, d, o + 1)
re-send from the orbit, room           o * nu                       (l + 1, d, o - 1)
re-send, full, gives up                o * nu * (1 - p)             (l, d, o - 1)
live attempt completes                 mu * l / n                   (l - 1, d, o)
dead attempt completes                 mu * d / n                   (l, d - 1, o)
timeout, retried                       theta * l * p                (l - 1, d + 1, o + 1)
timeout, gives up                      theta * l * (1 - p)          (l - 1, d + 1, o)
=====================================  ===========================  ===========================

A retry that would push the orbit past ``orbit_bound`` is dropped (the request gives up); the
stationary probability of sitting at the bound, :attr:`ChainSummary.at_bound`, says whether the
bound is large enough. numpy and scipy are imported here only (the ``analysis`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stormproof._validate import finite_above
from stormproof.errors import ConfigError
from stormproof.sim.analytic.model import OrbitParams

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["ChainSummary", "OrbitChain"]

_EXTRA = "pip install 'stormproof[analysis]'"


def _numeric() -> tuple[Any, Any, Any]:
    try:
        import numpy
        import scipy.sparse  # type: ignore[import-untyped]
        import scipy.sparse.linalg  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the analytic cross-check needs numpy and scipy: {_EXTRA} ({exc})"
        ) from exc
    return numpy, scipy.sparse, scipy.sparse.linalg


@dataclass(frozen=True, slots=True)
class ChainSummary:
    """What a distribution over the chain's states says about the system.

    ``in_server_distribution[n]`` is the probability of ``n`` requests in the server.
    """

    mean_in_server: float
    mean_live: float
    mean_orbit: float
    high_probability: float
    goodput: float
    at_bound: float
    in_server_distribution: tuple[float, ...]


class OrbitChain:
    """The generator matrix of the retry-orbit model and what can be solved from it."""

    def __init__(self, params: OrbitParams) -> None:
        xp, sparse, _ = _numeric()
        self.params = params
        capacity, bound = params.capacity, params.orbit_bound
        pairs = [(live, n - live) for n in range(capacity + 1) for live in range(n + 1)]
        self._pairs = pairs
        index = {pair: i for i, pair in enumerate(pairs)}
        width = len(pairs)
        self.states = width * (bound + 1)
        rows: list[int] = []
        cols: list[int] = []
        rates: list[float] = []

        def add(source: int, target: int, rate: float) -> None:
            if rate > 0.0:
                rows.append(source)
                cols.append(target)
                rates.append(rate)

        lam, mu = params.arrival_rate, params.service_rate
        theta, nu, p = params.timeout_rate, params.retry_rate, params.retry_probability
        for (live, dead), i in index.items():
            n = live + dead
            for orbit in range(bound + 1):
                here = orbit * width + i
                up = (orbit + 1) * width if orbit < bound else None  # None: retry dropped
                down = (orbit - 1) * width
                if n < capacity:
                    add(here, orbit * width + index[(live + 1, dead)], lam)
                    if orbit:
                        add(here, down + index[(live + 1, dead)], orbit * nu)
                else:
                    if up is not None:
                        add(here, up + i, lam * p)
                    if orbit:
                        add(here, down + i, orbit * nu * (1 - p))
                if live:
                    add(here, orbit * width + index[(live - 1, dead)], mu * live / n)
                    timed_out = index[(live - 1, dead + 1)]
                    if up is not None:
                        add(here, up + timed_out, theta * live * p)
                    add(here, orbit * width + timed_out, theta * live * (1 - p))
                if dead:
                    add(here, orbit * width + index[(live, dead - 1)], mu * dead / n)
        off = sparse.csr_matrix((rates, (rows, cols)), shape=(self.states, self.states))
        out = xp.asarray(off.sum(axis=1)).ravel()
        self.generator = (off - sparse.diags(out)).tocsr()
        live_of = xp.array([live for live, _ in pairs] * (bound + 1), dtype=float)
        dead_of = xp.array([dead for _, dead in pairs] * (bound + 1), dtype=float)
        self._live = live_of
        self._n = live_of + dead_of
        self._orbit = xp.repeat(xp.arange(bound + 1, dtype=float), width)

    def state_index(self, live: int, dead: int, orbit: int) -> int:
        """The index of state ``(live, dead, orbit)`` in the generator."""
        if live < 0 or dead < 0 or live + dead > self.params.capacity:
            raise ConfigError("state", "needs 0 <= live, dead and live + dead <= capacity")
        if not 0 <= orbit <= self.params.orbit_bound:
            raise ConfigError("orbit", f"must be within [0, {self.params.orbit_bound}]", orbit)
        return orbit * len(self._pairs) + self._pairs.index((live, dead))

    def stationary(self) -> npt.NDArray[np.float64]:
        """The stationary distribution: solves ``pi Q = 0`` with ``sum(pi) = 1``.

        The chain is irreducible (every state reaches the empty one and back), so ``pi`` is
        unique. Pinning ``pi[0] = 1`` and dropping the first equation keeps the system sparse
        (replacing an equation with the all-ones row would fill the LU factors).
        """
        xp, _, linalg = _numeric()
        transposed = self.generator.T.tocsc()
        rest = linalg.spsolve(transposed[1:, 1:], -transposed[1:, 0].toarray().ravel())
        pi = xp.concatenate([[1.0], rest])
        pi = xp.clip(pi, 0.0, None)
        result: npt.NDArray[np.float64] = pi / pi.sum()
        return result

    def transient(self, start: tuple[int, int, int], time: float) -> npt.NDArray[np.float64]:
        """The distribution at ``time`` from state ``start`` = (live, dead, orbit).

        Uses ``scipy.sparse.linalg.expm_multiply`` (Al-Mohy & Higham, 2011) on ``Q^T``.
        """
        finite_above("time", time, 0.0)
        xp, _, linalg = _numeric()
        initial = xp.zeros(self.states)
        initial[self.state_index(*start)] = 1.0
        result = linalg.expm_multiply(self.generator.T.tocsc() * time, initial)
        result = xp.clip(result, 0.0, None)
        normalized: npt.NDArray[np.float64] = result / result.sum()
        return normalized

    def summarize(self, distribution: npt.NDArray[np.float64]) -> ChainSummary:
        """Means, the high-mode probability, goodput and truncation mass of ``distribution``."""
        xp, _, _ = _numeric()
        n = self._n
        busy = n > 0
        live_share = xp.where(busy, self._live / xp.where(busy, n, 1.0), 0.0)
        by_n = xp.bincount(n.astype(int), weights=distribution, minlength=self.params.capacity + 1)
        width = len(self._pairs)
        return ChainSummary(
            mean_in_server=float(distribution @ n),
            mean_live=float(distribution @ self._live),
            mean_orbit=float(distribution @ self._orbit),
            high_probability=float(distribution[n >= self.params.high_from].sum()),
            goodput=float(self.params.service_rate * (distribution @ live_share)),
            at_bound=float(distribution[-width:].sum()),
            in_server_distribution=tuple(float(x) for x in by_n),
        )
