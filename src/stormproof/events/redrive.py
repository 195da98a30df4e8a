"""Redrive: move the messages of a dead-letter queue back to a queue, at a bounded rate.

Once the cause of the failures is fixed, the messages set aside in a DLQ are retried by moving
them back to their source queue (or any other queue)::

    redrive = Redrive(queues, "orders-dlq", "orders", rate_per_s=10.0, batch=10)
    progress = redrive.run(time.time, time.sleep, stop=shutdown_event)

**Rate.** A :class:`~stormproof.policies.ratelimit.TokenBucket` of ``rate_per_s`` tokens per
second and a burst of one batch is charged for each batch before it is moved, so over any
interval of t seconds at most ``batch + rate_per_s * t`` messages move. The default of 10 per
second is deliberately conservative -- a redrive must not become the next overload of the
consumers that just recovered -- where SQS's own redrive allows up to 500 messages per second.

**Crash safety.** Each batch is one :meth:`~stormproof.events.queue.QueueStore.move`: one
transaction that changes the ``queue`` column of the rows, keeping their ids. A redrive killed
at any point (``kill -9`` included) has moved whole batches only, so nothing is lost or
duplicated; running it again simply continues with what is left in the DLQ.

**Scope.** A run ends when the DLQ has no *visible* message left: messages someone is
inspecting (received, still in flight) stay and are moved by a later run. Messages that arrive
in the DLQ during the run are moved too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError
from stormproof.events.queue import QueueStore, check_queue_name
from stormproof.policies.ratelimit import Rejected, TokenBucket, Wait

__all__ = ["DEFAULT_REDRIVE_RATE", "Redrive", "RedriveProgress"]

#: Messages per second moved by default (SQS allows up to 500; see the module docstring).
DEFAULT_REDRIVE_RATE = 10.0


@dataclass(slots=True)
class RedriveProgress:
    """Counters of one :class:`Redrive` (cumulative over its ``run`` calls).

    Attributes:
        moved: messages moved to the target.
        batches: non-empty batches moved.
        waited: seconds spent sleeping for the rate limit.
        remaining: visible messages left in the DLQ at the last check.
        finished: the last run emptied the DLQ (of visible messages).
        stopped: the last run was cancelled.
    """

    moved: int = 0
    batches: int = 0
    waited: float = 0.0
    remaining: int = 0
    finished: bool = False
    stopped: bool = False


class Redrive:
    """Move messages from ``source_dlq`` to ``target``, rate-limited and resumable."""

    def __init__(
        self,
        queue_store: QueueStore,
        source_dlq: str,
        target: str,
        *,
        rate_per_s: float = DEFAULT_REDRIVE_RATE,
        batch: int = 10,
    ) -> None:
        check_queue_name(source_dlq, "source_dlq")
        check_queue_name(target, "target")
        if source_dlq == target:
            raise ConfigError("target", "must differ from source_dlq", target)
        finite_above("rate_per_s", rate_per_s, 0.0)
        int_at_least("batch", batch, 1)
        self.queues = queue_store
        self.source = source_dlq
        self.target = target
        self.rate_per_s = float(rate_per_s)
        self.batch = batch
        # Waiting for a whole batch takes at most batch / rate; twice that is never rejected.
        self._bucket = TokenBucket(rate_per_s, batch, max_wait=2.0 * batch / rate_per_s)
        self.progress = RedriveProgress()

    def run(
        self,
        now_fn: Callable[[], float],
        sleep_fn: Callable[[float], None],
        stop: threading.Event | Callable[[], bool] | None = None,
        on_batch: Callable[[list[str]], None] | None = None,
    ) -> RedriveProgress:
        """Move batches until the DLQ is empty or ``stop`` is set; returns the progress.

        ``now_fn`` gives wall-clock epoch seconds (the queue's clock); ``sleep_fn`` waits for
        the rate limit (pass ``stop.wait`` to make sleeps cancellable too). ``on_batch`` is told
        the ids of every batch once it has been committed.
        """
        progress = self.progress
        progress.finished = progress.stopped = False
        while True:
            if _stopped(stop):
                progress.stopped = True
                return progress
            visible, _in_flight = self.queues.depth(self.source, now_fn())
            progress.remaining = visible
            if visible == 0:
                progress.finished = True
                return progress
            cost = min(self.batch, visible)
            decision = self._bucket.acquire(now_fn(), float(cost))
            if isinstance(decision, Rejected):  # only if the clock went backwards
                progress.waited += decision.retry_after
                sleep_fn(decision.retry_after)
                continue
            if isinstance(decision, Wait):
                progress.waited += decision.delay
                sleep_fn(decision.delay)
                if _stopped(stop):
                    progress.stopped = True
                    return progress
            ids = self.queues.move(self.source, self.target, cost, now_fn())
            if ids:
                progress.moved += len(ids)
                progress.batches += 1
                if on_batch is not None:
                    on_batch(ids)


def _stopped(stop: threading.Event | Callable[[], bool] | None) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())
