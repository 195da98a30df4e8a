"""A caching DNS resolver that also caches empty answers, each for its own time.

:class:`~stormproof.sim.parts.dns.ResolverCache` keeps every answer, positive or empty, for one
TTL. Resolvers in the field treat the two differently (RFC 2308: a negative answer is cached
for the SOA record's minimum, which each resolver may cap at its own limit), and that is how
the October 2025 report reads: failures began "immediately" when the record emptied, but
customers came back "as cached DNS records expired between 2:25 AM and 2:40 AM", a quarter of
an hour after the repair. :class:`NegativeCachingResolver` keeps an address answer for ``ttl``
seconds and an empty one for a time drawn uniformly from ``(0, negative_ttl]``, so a
population of resolvers comes back spread over ``negative_ttl`` after a repair.
"""

from __future__ import annotations

import math
import random

from stormproof._validate import finite_above, finite_at_least
from stormproof.policies.fencing import FencedRegister

__all__ = ["NegativeCachingResolver"]


class NegativeCachingResolver:
    """A resolver's cache of one record: addresses for ``ttl``, an empty answer for longer.

    Args:
        ttl: seconds an answer with addresses is served from the cache.
        negative_ttl: an empty answer is served for ``u * negative_ttl`` seconds, ``u`` uniform
            in ``(0, 1]`` and drawn at each fetch; ``0`` caches empty answers for no time.
        rng: where ``u`` comes from; one draw per fetch, empty answer or not, so the stream's
            use does not depend on what the record held.
        answer: the answer cached at construction (default: none).
        expires: when that answer expires (default: already expired).
    """

    __slots__ = ("answer", "expires", "fetches", "negative_ttl", "rng", "ttl")

    def __init__(
        self,
        ttl: float,
        negative_ttl: float,
        rng: random.Random,
        *,
        answer: tuple[str, ...] = (),
        expires: float = -math.inf,
    ) -> None:
        finite_above("ttl", ttl, 0.0)
        finite_at_least("negative_ttl", negative_ttl, 0.0)
        self.ttl = float(ttl)
        self.negative_ttl = float(negative_ttl)
        self.rng = rng
        self.answer = answer
        self.expires = expires
        self.fetches = 0

    def resolve(self, now: float, record: FencedRegister[tuple[str, ...]]) -> tuple[str, ...]:
        """The answer at ``now``: the cached one while fresh, else ``record``'s (then cached)."""
        if now >= self.expires:
            self.fetches += 1
            draw = 1.0 - self.rng.random()  # in (0, 1]
            self.answer = record.value or ()
            life = self.ttl if self.answer else draw * self.negative_ttl
            self.expires = now + life
        return self.answer
