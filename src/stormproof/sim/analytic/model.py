"""The single-server retry-orbit model that the chain and the simulator share.

A server with capacity ``capacity`` (requests in it, the one in service included) shares its
rate ``service_rate`` equally among the requests in it (processor sharing, work ~ Exp(mean
1 / service_rate)). New requests arrive as a Poisson process of rate ``arrival_rate``. The client
gives up on an attempt after a timeout (rate ``timeout_rate``: Exp(mean 1 / timeout_rate)), but
the server keeps working on it -- it stays in the server as *dead* work until it completes. An
attempt that times out, or finds the server full, is retried with probability
``retry_probability``: the request joins the *retry orbit* and is sent again after a backoff
(rate ``retry_rate``). The wasted work of timed-out attempts is what makes a second, congested
stable state possible: a full server whose work is mostly dead, fed by the orbit.
"""

from __future__ import annotations

from dataclasses import dataclass

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError

__all__ = ["OrbitParams"]


@dataclass(frozen=True, slots=True)
class OrbitParams:
    """Parameters of the retry-orbit model (rates per second).

    Args:
        arrival_rate: new requests per second (lambda).
        service_rate: requests the server completes per second when busy (mu).
        capacity: most requests in the server (K); an attempt finding it full is rejected.
        timeout_rate: 1 / mean client timeout (theta).
        retry_rate: 1 / mean backoff before a re-send from the orbit (nu).
        retry_probability: chance a failed attempt is retried (the rest give up).
        orbit_bound: the chain's truncation of the orbit (not a property of the system: the
            simulator has no bound; the chain drops a retry that would exceed it and reports the
            probability of sitting at the bound).
        high_from: the server holds at least this many requests in the high (congested) mode.
    """

    arrival_rate: float = 6.0
    service_rate: float = 10.0
    capacity: int = 20
    timeout_rate: float = 0.5
    retry_rate: float = 1.0
    retry_probability: float = 0.9
    orbit_bound: int = 60
    high_from: int = 15

    def __post_init__(self) -> None:
        finite_above("arrival_rate", self.arrival_rate, 0.0)
        finite_above("service_rate", self.service_rate, 0.0)
        int_at_least("capacity", self.capacity, 1)
        finite_above("timeout_rate", self.timeout_rate, 0.0)
        finite_above("retry_rate", self.retry_rate, 0.0)
        finite_at_least("retry_probability", self.retry_probability, 0.0)
        if self.retry_probability >= 1.0:
            raise ConfigError(
                "retry_probability",
                "must be < 1 (every request must give up eventually)",
                self.retry_probability,
            )
        int_at_least("orbit_bound", self.orbit_bound, 1)
        int_at_least("high_from", self.high_from, 1)
        if self.high_from > self.capacity:
            raise ConfigError("high_from", f"must be <= capacity ({self.capacity})", self.high_from)
