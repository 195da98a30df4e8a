"""Reliable event processing: idempotency, validation, batch partial failures, queues, DLQs."""

from stormproof.events.batch import BatchFailed, BatchProcessor, BatchResult, Record
from stormproof.events.idempotency import (
    Idempotency,
    IdempotencyConfig,
    IdempotencyError,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyLease,
    IdempotencyWarning,
    current_lease,
    idempotent,
    payload_hash,
)
from stormproof.events.queue import Message, QueuePolicy, QueueStore, open_queue
from stormproof.events.redrive import Redrive
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
    "IdempotencyLease",
    "IdempotencyWarning",
    "Invalid",
    "Message",
    "QueuePolicy",
    "QueueStore",
    "Record",
    "Redrive",
    "ValidationPolicy",
    "current_lease",
    "idempotent",
    "open_queue",
    "payload_hash",
]
