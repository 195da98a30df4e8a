"""Reliable event processing: idempotency; validation, dead-letter queues and batches to come."""

from stormproof.events.idempotency import (
    Idempotency,
    IdempotencyConfig,
    IdempotencyError,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyWarning,
    idempotent,
    payload_hash,
)

__all__ = [
    "Idempotency",
    "IdempotencyConfig",
    "IdempotencyError",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "IdempotencyWarning",
    "idempotent",
    "payload_hash",
]
