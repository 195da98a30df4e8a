"""The retry-orbit model on the discrete-event kernel, to check the chain against.

It is written the way a system behaves rather than the way the chain is written: each request has
its own work, drawn when it arrives; the processor-sharing server tracks virtual time; each attempt
has its own timer; timed-out attempts stay in the server until their work is done. Only the
distributions are chosen to match the chain (exponential work, timeouts and backoffs), and they
can be switched to fixed values (``timeout="fixed"``, ``backoff="fixed"``) to see what the
chain's exponential assumption changes. The orbit is not truncated.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Literal

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.sim.analytic.model import OrbitParams
from stormproof.sim.kernel import Simulation

__all__ = ["OrbitSimulation", "OrbitStats"]

Distribution = Literal["exponential", "fixed"]


class _Attempt:
    __slots__ = ("live", "timer")

    def __init__(self, live: bool) -> None:
        self.live = live
        self.timer: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class OrbitStats:
    """Time averages over a measured window, and the state at its end."""

    mean_in_server: float
    mean_live: float
    mean_orbit: float
    high_fraction: float
    goodput: float
    end_in_server: int
    end_orbit: int


class OrbitSimulation:
    """One run of the retry-orbit model; ``initial`` is (live, dead, orbit) at time 0.

    Random streams: ``arrivals``, ``work``, ``timeouts``, ``retry`` (the coin) and ``backoff``.
    """

    def __init__(
        self,
        params: OrbitParams,
        seed: int,
        *,
        initial: tuple[int, int, int] = (0, 0, 0),
        timeout: Distribution = "exponential",
        backoff: Distribution = "exponential",
    ) -> None:
        for name, value in (("timeout", timeout), ("backoff", backoff)):
            if value not in ("exponential", "fixed"):
                raise ConfigError(name, "must be 'exponential' or 'fixed'", value)
        live, dead, orbit = initial
        int_at_least("initial.live", live, 0)
        int_at_least("initial.dead", dead, 0)
        int_at_least("initial.orbit", orbit, 0)
        if live + dead > params.capacity:
            raise ConfigError("initial", f"live + dead must be <= capacity ({params.capacity})")
        self.params = params
        self.sim = Simulation(seed, hash_trace=False)
        self._fixed_timeout = timeout == "fixed"
        self._fixed_backoff = backoff == "fixed"
        self._arrival_rng = self.sim.rng("arrivals")
        self._work_rng = self.sim.rng("work")
        self._timeout_rng = self.sim.rng("timeouts")
        self._retry_rng = self.sim.rng("retry")
        self._backoff_rng = self.sim.rng("backoff")
        # Processor sharing: virtual time advances at 1 / n per second; a request finishes when
        # it reaches its arrival's virtual time plus its work.
        self._virtual = 0.0
        self._changed = 0.0
        self._jobs: list[tuple[float, int, _Attempt]] = []
        self._sequence = 0
        self._completion: list[Any] | None = None
        self.live = 0
        self.orbit = 0
        self.successes = 0
        # Time integrals since the start of measurement.
        self._measure_from = 0.0
        self._area_n = 0.0
        self._area_live = 0.0
        self._area_orbit = 0.0
        self._area_high = 0.0
        self._successes_from = 0
        for _ in range(live):
            self._admit(_Attempt(True))
        for _ in range(dead):
            self._admit(_Attempt(False))
        for _ in range(orbit):
            self._to_orbit()
        self._next_arrival()

    @property
    def in_server(self) -> int:
        """Requests in the server, live and dead."""
        return len(self._jobs)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _account(self) -> None:
        now = self.sim.now()
        span = now - self._changed
        if span > 0.0:
            n = len(self._jobs)
            if n:
                self._virtual += span / n
            self._area_n += n * span
            self._area_live += self.live * span
            self._area_orbit += self.orbit * span
            if n >= self.params.high_from:
                self._area_high += span
        self._changed = now

    def _reschedule(self) -> None:
        if self._completion is not None:
            Simulation.cancel(self._completion)
            self._completion = None
        if self._jobs:
            delay = max(0.0, (self._jobs[0][0] - self._virtual) * len(self._jobs))
            self._completion = self.sim.schedule(delay, self._complete)

    # -- events --------------------------------------------------------------------------------

    def _next_arrival(self) -> None:
        self.sim.schedule(self._arrival_rng.expovariate(self.params.arrival_rate), self._arrive)

    def _arrive(self) -> None:
        self._next_arrival()
        self._send()

    def _send(self) -> None:
        if len(self._jobs) >= self.params.capacity:
            self._failed()  # rejected at once: the client sees the error without waiting
            return
        attempt = _Attempt(True)
        self._admit(attempt)

    def _admit(self, attempt: _Attempt) -> None:
        self._account()
        work = self._work_rng.expovariate(self.params.service_rate)
        self._sequence += 1
        heapq.heappush(self._jobs, (self._virtual + work, self._sequence, attempt))
        if attempt.live:
            self.live += 1
            rate = self.params.timeout_rate
            wait = 1.0 / rate if self._fixed_timeout else self._timeout_rng.expovariate(rate)
            attempt.timer = self.sim.schedule(wait, self._timed_out, attempt)
        self._reschedule()

    def _complete(self) -> None:
        self._completion = None
        self._account()
        _, _, attempt = heapq.heappop(self._jobs)
        if attempt.live:
            attempt.live = False
            self.live -= 1
            self.successes += 1
            if attempt.timer is not None:
                Simulation.cancel(attempt.timer)
        self._reschedule()

    def _timed_out(self, attempt: _Attempt) -> None:
        if not attempt.live:
            return
        self._account()
        attempt.live = False  # its work stays in the server: wasted
        self.live -= 1
        self._failed()

    def _failed(self) -> None:
        if self._retry_rng.random() < self.params.retry_probability:
            self._to_orbit()

    def _to_orbit(self) -> None:
        self._account()
        self.orbit += 1
        rate = self.params.retry_rate
        wait = 1.0 / rate if self._fixed_backoff else self._backoff_rng.expovariate(rate)
        self.sim.schedule(wait, self._resend)

    def _resend(self) -> None:
        self._account()
        self.orbit -= 1
        self._send()

    # -- running -------------------------------------------------------------------------------

    def run(self, warmup: float, duration: float) -> OrbitStats:
        """Run ``warmup`` seconds unmeasured, then ``duration`` measured seconds."""
        finite_at_least("warmup", warmup, 0.0)
        finite_above("duration", duration, 0.0)
        start = self.sim.now()
        self.sim.run(until=start + warmup)
        self._account()
        self._area_n = self._area_live = self._area_orbit = self._area_high = 0.0
        self._measure_from = self.sim.now()
        self._successes_from = self.successes
        self.sim.run(until=self._measure_from + duration)
        self._account()
        span = self.sim.now() - self._measure_from
        return OrbitStats(
            mean_in_server=self._area_n / span,
            mean_live=self._area_live / span,
            mean_orbit=self._area_orbit / span,
            high_fraction=self._area_high / span,
            goodput=(self.successes - self._successes_from) / span,
            end_in_server=len(self._jobs),
            end_orbit=self.orbit,
        )
