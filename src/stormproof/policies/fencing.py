"""Fencing: generation-checked writes, safe clean-up, and leases with fencing tokens.

The October 2025 DynamoDB outage began with a race in DNS automation (seed report, DynamoDB
section): an Enactor checked *once*, when it started, that its plan was newer than the one in
place; delayed by unusually slow updates, it then applied that old plan over the newer one, and
another Enactor's clean-up deleted the old plan -- now the active one -- leaving the endpoint with
no records. The fix class is to make the check part of the write and to keep clean-up away from
anything in use:

* :class:`FencedRegister` -- a value that only a *newer* generation may replace; the check and
  the write are one step, so there is no window between them;
* :func:`may_delete` / :class:`GenerationStore.cleanup` -- delete a generation only if it is
  older than the active one by a safe margin, never the active one itself;
* :class:`Lease` -- a time-limited, renewable claim with a holder and a fencing token that grows
  with every new grant, so a resource can refuse writes from a holder whose lease has lapsed
  (the "fencing token" of M. Kleppmann, "How to do distributed locking", 2016).

All sans-IO: time is passed in, nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError

__all__ = [
    "FencedRegister",
    "GenerationStore",
    "Lease",
    "LeaseGrant",
    "may_apply",
    "may_delete",
]

V = TypeVar("V")


def may_apply(stored: int | None, candidate: int) -> bool:
    """Whether ``candidate`` may replace ``stored``: only a strictly newer generation may."""
    return stored is None or candidate > stored


def may_delete(candidate: int, active: int | None, margin: int) -> bool:
    """Whether generation ``candidate`` may be deleted while ``active`` is in use.

    Only generations older than ``active - margin`` may go; the active generation and anything
    newer never may (a newer one may be about to become active). With no active generation,
    nothing may be deleted.
    """
    return active is not None and candidate < active - margin


class FencedRegister(Generic[V]):
    """A value with a generation; :meth:`apply` replaces it only with a newer generation.

    ``apply`` is the compare-and-set: the comparison and the write happen together, as a
    conditional write in a store would (DynamoDB ``ConditionExpression``, SQL ``UPDATE ...
    WHERE generation < :new``). ``rejected`` counts stale writes refused.
    """

    __slots__ = ("generation", "rejected", "value")

    def __init__(self) -> None:
        self.generation: int | None = None
        self.value: V | None = None
        self.rejected = 0

    def apply(self, generation: int, value: V) -> bool:
        """Store ``value`` if ``generation`` is newer than the stored one; ``False`` if stale."""
        if not may_apply(self.generation, generation):
            self.rejected += 1
            return False
        self.generation = generation
        self.value = value
        return True


class GenerationStore(Generic[V]):
    """Plans (or configurations) by generation, one of them active, with safe clean-up.

    ``put`` stores a generation; ``activate`` makes one active only if it is newer than the
    active one (fenced); ``cleanup(margin)`` deletes generations older than ``active - margin``
    and never the active one, so a slow writer that activates an old plan cannot have it deleted
    from under it, and a clean-up cannot remove what is in use.
    """

    __slots__ = ("_plans", "active", "stale_activations")

    def __init__(self) -> None:
        self._plans: dict[int, V] = {}
        self.active: int | None = None
        self.stale_activations = 0

    def put(self, generation: int, plan: V) -> None:
        """Store ``plan`` under ``generation`` (replacing a plan of the same generation)."""
        self._plans[generation] = plan

    def get(self, generation: int) -> V | None:
        """The plan of ``generation``, or ``None`` if it was never stored or was deleted."""
        return self._plans.get(generation)

    def activate(self, generation: int) -> bool:
        """Make ``generation`` active if it exists and is newer than the active one."""
        if generation not in self._plans:
            raise ConfigError("generation", "was never stored or has been deleted", generation)
        if not may_apply(self.active, generation):
            self.stale_activations += 1
            return False
        self.active = generation
        return True

    def cleanup(self, margin: int) -> list[int]:
        """Delete generations older than ``active - margin``; returns them, oldest first."""
        int_at_least("margin", margin, 0)
        doomed = sorted(g for g in self._plans if may_delete(g, self.active, margin))
        for generation in doomed:
            del self._plans[generation]
        return doomed

    def generations(self) -> list[int]:
        """Stored generations, oldest first."""
        return sorted(self._plans)


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A lease held by ``holder`` until ``expires_at``, with fencing ``token``."""

    holder: Hashable
    token: int
    expires_at: float


class Lease:
    """A renewable, time-limited claim on one resource, with fencing tokens.

    ``acquire`` succeeds when the lease is free, expired, or already held by the same holder
    (then it is renewed); every *new* grant gets a larger token than any before. ``renew`` extends
    a live lease for its holder; an expired lease cannot be renewed, it must be acquired again --
    which is the point of a lease: a holder that could not renew in time (its dependency was down,
    as DWFM's was in October 2025) has lost it. ``accepts(token)`` is the resource-side check.
    """

    __slots__ = ("_grant", "_highest_token", "grants", "ttl")

    def __init__(self, ttl: float) -> None:
        finite_above("ttl", ttl, 0.0)
        self.ttl = float(ttl)
        self._grant: LeaseGrant | None = None
        self._highest_token = 0
        self.grants = 0

    def holder(self, now: float) -> Hashable | None:
        """Who holds the lease at ``now`` (``None`` if free or expired)."""
        grant = self._grant
        return grant.holder if grant is not None and now < grant.expires_at else None

    def grant(self, now: float) -> LeaseGrant | None:
        """The live grant at ``now``, if any."""
        grant = self._grant
        return grant if grant is not None and now < grant.expires_at else None

    def acquire(self, now: float, holder: Hashable) -> LeaseGrant | None:
        """Take the lease for ``holder`` (or renew it if ``holder`` has it); ``None`` if taken."""
        current = self.grant(now)
        if current is not None:
            if current.holder != holder:
                return None
            self._grant = LeaseGrant(holder, current.token, now + self.ttl)
            return self._grant
        self._highest_token += 1
        self.grants += 1
        self._grant = LeaseGrant(holder, self._highest_token, now + self.ttl)
        return self._grant

    def renew(self, now: float, grant: LeaseGrant) -> LeaseGrant | None:
        """Extend a live lease by ``ttl`` from now; ``None`` if it expired or changed hands."""
        current = self.grant(now)
        if current is None or current.token != grant.token:
            return None
        self._grant = LeaseGrant(current.holder, current.token, now + self.ttl)
        return self._grant

    def release(self, now: float, grant: LeaseGrant) -> bool:
        """Give the lease up early; ``False`` if ``grant`` no longer holds it."""
        current = self.grant(now)
        if current is None or current.token != grant.token:
            return False
        self._grant = None
        return True

    def accepts(self, token: int, now: float | None = None) -> bool:
        """Resource-side fencing: whether the holder of ``token`` may write.

        Only the newest token ever granted may: a holder whose lease was taken over is refused
        even if it does not know it yet. With ``now``, the lease must also be live at ``now``,
        which refuses a lapsed holder before anyone else has acquired the lease.
        """
        if token != self._highest_token:
            return False
        return now is None or self.grant(now) is not None

    def __repr__(self) -> str:
        return f"Lease(ttl={self.ttl:g}, grant={self._grant!r})"
