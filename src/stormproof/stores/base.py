"""The store protocol: what idempotency (and, later, queues) need from a durable back end.

An idempotency record guards one operation, identified by a key:

* ``claim`` -- atomically take the key for a new run: succeeds when there is no record, or the
  record has expired (its TTL passed), or it is in progress but its **lease** ran out (the worker
  died), or a previous run failed and was kept as ``failed``. Otherwise it returns the existing
  record, so the caller can return the stored result, wait, or refuse.
* ``complete`` -- store the result, only if the caller still holds the claim (its ``token``):
  a worker whose lease expired and was taken over cannot overwrite the new owner's record. This is
  the fencing rule of :mod:`stormproof.policies.fencing` applied to stored records.
* ``release`` / ``fail`` -- the operation raised: delete the record so a retry may run, or keep it
  as ``failed`` with the error.
* ``extend`` -- renew the lease of a long-running operation: only the holder of the token, only
  while the record is in progress; ``False`` once another run took the key over (fenced).

Every back end implements the same semantics and passes the same conformance suite
(``tests/stores/test_conformance.py``). Times are wall-clock epoch seconds, passed in by the
caller (records are shared between processes and machines, so a monotonic clock would not do).
The same methods as coroutines form :class:`stormproof.stores.aio.AsyncIdempotencyStore`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["SCHEMA_VERSION", "Claim", "IdempotencyRecord", "IdempotencyStore", "RecordStatus"]

#: The version of the stores' schema; ``init`` records it, later versions migrate from it.
SCHEMA_VERSION = 1


class RecordStatus(enum.StrEnum):
    """The state of an idempotency record."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One guarded operation.

    Attributes:
        key: the idempotency key.
        status: in progress, completed or failed.
        payload_hash: the hash of the payload that created it (same key, other payload = misuse).
        token: who holds the claim; ``complete``/``release``/``fail`` must present it.
        expires_at: when the record stops counting (epoch seconds; the TTL).
        lease_expires_at: until when an in-progress claim is protected (epoch seconds).
        result: the stored result as JSON text (completed), or the error as JSON text (failed).
    """

    key: str
    status: RecordStatus
    payload_hash: str
    token: str
    expires_at: float
    lease_expires_at: float
    result: str | None = None

    def is_expired(self, now: float) -> bool:
        """Whether the TTL has passed."""
        return now >= self.expires_at

    def is_claimable(self, now: float) -> bool:
        """Whether a new run may take this key over at ``now``."""
        if self.is_expired(now) or self.status is RecordStatus.FAILED:
            return True
        return self.status is RecordStatus.IN_PROGRESS and now >= self.lease_expires_at


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to ``claim``: ``claimed`` and the record now in the store."""

    claimed: bool
    record: IdempotencyRecord


@runtime_checkable
class IdempotencyStore(Protocol):
    """What a back end provides for idempotency. See the module docstring for the semantics."""

    url: str

    def init(self) -> None:
        """Create the schema if missing (idempotent) and record ``SCHEMA_VERSION``."""
        ...

    def claim(
        self,
        key: str,
        payload_hash: str,
        token: str,
        now: float,
        *,
        lease: float,
        ttl: float,
    ) -> Claim:
        """Atomically take ``key`` for a new run, or return the record that holds it."""
        ...

    def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store ``result`` (JSON) if ``token`` still holds ``key``; ``False`` if it does not."""
        ...

    def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds it (the run failed and may be retried)."""
        ...

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the in-progress claim of ``token``: ``lease_expires_at = now + lease``.

        Only while ``token`` holds ``key`` in progress (the same condition as ``complete``, so a
        lapsed lease nobody has taken over yet may still be renewed); ``False`` otherwise. If
        the new lease ends after ``expires_at``, ``expires_at`` moves to the lease's end too, so
        the record cannot expire (and be claimed) while its lease runs.
        """
        ...

    def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` (JSON) if ``token`` holds it."""
        ...

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not, or ``None``."""
        ...

    def schema_version(self) -> int | None:
        """The schema version recorded by ``init``, or ``None`` before it."""
        ...

    def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` records expired at ``now``; how many went.

        An expired record is claimable anyway, so deleting it changes no answer; it only keeps
        tables from growing with every distinct key. Back ends whose records expire by
        themselves (Redis keys, DynamoDB's TTL) return 0. Pass ``now`` minus an allowance for
        clock skew between your hosts.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
