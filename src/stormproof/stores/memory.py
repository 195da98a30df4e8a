"""An in-memory store: the reference implementation of the semantics, for tests and examples.

It is not durable and not shared between processes. A lock makes it safe between threads.
"""

from __future__ import annotations

import threading

from stormproof._validate import int_at_least
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus

__all__ = ["MemoryStore"]


class MemoryStore:
    """Records in a dict, behind a lock. ``url`` is ``memory://``."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._records: dict[str, IdempotencyRecord] = {}
        self._version: int | None = None
        self._lock = threading.Lock()

    def init(self) -> None:
        """Nothing to create; records the schema version."""
        self._version = SCHEMA_VERSION

    def schema_version(self) -> int | None:
        """The version recorded by :meth:`init`."""
        return self._version

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
        """Take ``key`` if it is free, expired, failed or its lease ran out."""
        with self._lock:
            existing = self._records.get(key)
            if existing is not None and not existing.is_claimable(now):
                return Claim(False, existing)
            record = IdempotencyRecord(
                key, RecordStatus.IN_PROGRESS, payload_hash, token, now + ttl, now + lease
            )
            self._records[key] = record
            return Claim(True, record)

    def _holds(self, key: str, token: str) -> IdempotencyRecord | None:
        record = self._records.get(key)
        if record is None or record.token != token or record.status is not RecordStatus.IN_PROGRESS:
            return None
        return record

    def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        with self._lock:
            record = self._holds(key, token)
            if record is None:
                return False
            self._records[key] = IdempotencyRecord(
                key, RecordStatus.COMPLETED, record.payload_hash, token, now + ttl, now, result
            )
            return True

    def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds the claim."""
        with self._lock:
            if self._holds(key, token) is None:
                return False
            del self._records[key]
            return True

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim."""
        with self._lock:
            record = self._holds(key, token)
            if record is None:
                return False
            until = now + lease
            self._records[key] = IdempotencyRecord(
                key,
                RecordStatus.IN_PROGRESS,
                record.payload_hash,
                token,
                max(record.expires_at, until),
                until,
            )
            return True

    def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed if ``token`` holds the claim."""
        with self._lock:
            record = self._holds(key, token)
            if record is None:
                return False
            self._records[key] = IdempotencyRecord(
                key, RecordStatus.FAILED, record.payload_hash, token, now + ttl, now, error
            )
            return True

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``."""
        with self._lock:
            return self._records.get(key)

    def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` expired records."""
        int_at_least("limit", limit, 1)
        with self._lock:
            expired = [key for key, record in self._records.items() if record.is_expired(now)]
            for key in expired[:limit]:
                del self._records[key]
            return min(len(expired), limit)

    def close(self) -> None:
        """Nothing to release."""
