"""Reliable event processing: idempotency, validation, batch partial failures."""

from stormproof.events.batch import BatchFailed, BatchProcessor, BatchResult, Record
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
from stormproof.events.validation import Invalid, ValidationPolicy

__all__ = [
    "BatchFailed",
    "BatchProcessor",
    "BatchResult",
    "Idempotency",
    "IdempotencyConfig",
    "IdempotencyError",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "IdempotencyWarning",
    "Invalid",
    "Record",
    "ValidationPolicy",
    "idempotent",
    "payload_hash",
]
