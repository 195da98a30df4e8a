"""Batch processing with partial failures: report only the records that failed.

When a batch of queue or stream records is handled as one unit, one bad record makes the whole
batch fail and come back -- and the good records are processed again. REL 2 and AWS Lambda's
``ReportBatchItemFailures`` answer with partial failures: process every record, return the ids of
those that failed, and let only those be retried. :class:`BatchProcessor` does that anywhere:

* **per-record handlers**: every record is handled on its own; exceptions are caught and the
  record's id goes to ``failed``;
* **batch handlers with bisect-on-error**: a handler that takes a list is called with the whole
  batch; if it raises, the batch is split in halves and each half retried, down to single
  records, which isolates poison pills (the ``BisectBatchOnFunctionError`` of stream sources);
* **FIFO**: records with a message ``group`` must be processed in order, so once a record of a
  group fails, the later records of that group are not processed and are reported failed too
  (``fifo="group"``), or every later record of the batch is (``fifo="batch"``);
* **max attempts**: a record that has already been delivered ``max_attempts`` times and fails
  again is handed to ``dead_letter`` (with its error) instead of being reported for retry, so a
  poison pill leaves the queue.

:meth:`BatchResult.lambda_response` gives Lambda's ``{"batchItemFailures": [...]}`` shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stormproof._validate import int_at_least
from stormproof.errors import ConfigError, StormproofError

__all__ = ["BatchFailed", "BatchProcessor", "BatchResult", "Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a batch.

    ``id`` and ``body``; an optional FIFO message ``group``; ``attempts``, how many times it has
    been delivered so far (1 on the first delivery).
    """

    id: str
    body: Any
    group: str | None = None
    attempts: int = 1


@dataclass(slots=True)
class BatchResult:
    """What happened to each record, by id."""

    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def retry(self) -> list[str]:
        """Ids to leave on the queue for another delivery: failed, then skipped (FIFO)."""
        return self.failed + self.skipped

    def lambda_response(self) -> dict[str, list[dict[str, str]]]:
        """AWS Lambda's partial batch response: ``{"batchItemFailures": [{"itemIdentifier"}]}``."""
        return {"batchItemFailures": [{"itemIdentifier": rid} for rid in self.retry]}


class BatchFailed(StormproofError):
    """Every record failed (raised only with ``raise_on_all_failed=True``)."""

    def __init__(self, result: BatchResult) -> None:
        super().__init__(f"all {len(result.retry)} records of the batch failed")
        self.result = result


class BatchProcessor:
    """Processes batches with partial failures. Give exactly one of the handlers.

    Args:
        handler: ``handler(record)`` for one record at a time.
        batch_handler: ``batch_handler(records)`` for a whole batch; on an exception the batch is
            bisected down to single records (``bisect_on_error``; without it the whole batch is
            reported failed).
        bisect_on_error: bisect a failing batch (batch handlers only). Default true.
        fifo: ``None`` (no order), ``"group"`` (a failure skips the rest of its group) or
            ``"batch"`` (a failure skips the rest of the batch). Per-record handlers only.
        max_attempts: records delivered this many times that fail again go to ``dead_letter``.
        dead_letter: ``dead_letter(record, error)``; required with ``max_attempts``.
        raise_on_all_failed: raise :class:`BatchFailed` when no record succeeded (Powertools'
            default, so the whole batch is retried by the event source); default false.
    """

    def __init__(
        self,
        handler: Callable[[Record], Any] | None = None,
        *,
        batch_handler: Callable[[list[Record]], Any] | None = None,
        bisect_on_error: bool = True,
        fifo: Literal["group", "batch"] | None = None,
        max_attempts: int | None = None,
        dead_letter: Callable[[Record, BaseException], None] | None = None,
        raise_on_all_failed: bool = False,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ConfigError("handler", "give exactly one of handler and batch_handler")
        if fifo not in (None, "group", "batch"):
            raise ConfigError("fifo", 'must be None, "group" or "batch"', fifo)
        if fifo is not None and batch_handler is not None:
            raise ConfigError("fifo", "needs a per-record handler (order is per record)")
        if max_attempts is not None:
            int_at_least("max_attempts", max_attempts, 1)
            if dead_letter is None:
                raise ConfigError("dead_letter", "is required with max_attempts")
        self.handler = handler
        self.batch_handler = batch_handler
        self.bisect_on_error = bisect_on_error
        self.fifo = fifo
        self.max_attempts = max_attempts
        self.dead_letter = dead_letter
        self.raise_on_all_failed = raise_on_all_failed

    def process(self, records: Sequence[Record]) -> BatchResult:
        """Process ``records``; see the class docstring."""
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            raise ConfigError("records", "record ids must be unique within a batch")
        result = BatchResult()
        if self.handler is not None:
            self._one_by_one(records, result)
        else:
            self._batch(list(records), result)
        if self.raise_on_all_failed and records and not result.succeeded:
            raise BatchFailed(result)
        return result

    def _failed(self, record: Record, error: BaseException, result: BatchResult) -> None:
        result.errors[record.id] = f"{type(error).__name__}: {error}"
        if self.max_attempts is not None and record.attempts >= self.max_attempts:
            assert self.dead_letter is not None
            self.dead_letter(record, error)
            result.dead_lettered.append(record.id)
        else:
            result.failed.append(record.id)

    def _one_by_one(self, records: Sequence[Record], result: BatchResult) -> None:
        handler = self.handler
        assert handler is not None
        blocked_groups: set[str | None] = set()
        stop = False
        for record in records:
            if stop or (self.fifo == "group" and record.group in blocked_groups):
                result.skipped.append(record.id)
                continue
            try:
                handler(record)
            except Exception as error:
                self._failed(record, error, result)
                if self.fifo == "group":
                    blocked_groups.add(record.group)
                elif self.fifo == "batch":
                    stop = True
            else:
                result.succeeded.append(record.id)

    def _batch(self, records: list[Record], result: BatchResult) -> None:
        if not records:
            return
        batch_handler = self.batch_handler
        assert batch_handler is not None
        try:
            batch_handler(records)
        except Exception as error:
            if len(records) == 1 or not self.bisect_on_error:
                for record in records:
                    self._failed(record, error, result)
                return
            middle = len(records) // 2
            self._batch(records[:middle], result)
            self._batch(records[middle:], result)
        else:
            result.succeeded.extend(r.id for r in records)
