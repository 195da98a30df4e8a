"""Group commit: concurrent callers' writes combined into one statement and one commit.

A durable write waits for its commit's WAL flush. One caller after another, a store can then
make no more writes per second than the server makes flushes; callers that arrive while a write
is in flight can instead share the *next* statement, so that one round trip and one flush carry
all of them. This module holds the queueing; the store supplies how to run one item and how to
run many in one statement.

The batching is "natural": nothing waits for a batch to fill. A caller that finds a free slot
(fewer than ``max_inflight`` statements running) runs at once, alone, exactly as without group
commit; only callers that find every slot busy queue, and the next free slot takes all of them
(up to ``max_batch``) together. Low load therefore sees the latency of a plain call, high load
the throughput of batches.

Two items with the same ``key`` never share a batch (a statement may not update one row twice):
the later one stays queued for the next. With ``key=None`` any items may share one, and the
store's ``run_many`` answers repeats itself. Every caller returns only when the statement that
carried its item has committed (or failed), so an acknowledged write is as durable as without
group commit.

:class:`GroupCommit` serves threads with no thread of its own: a waiting caller that finds a
free slot runs the next batch in its own thread (leader and followers), and keeps leading or
waiting until its own item is done. :class:`AsyncGroupCommit` serves one event loop: a caller
that finds a free slot and no queue runs its item in its own task; queued items run as tasks
of the loop, so a caller that is cancelled does not cancel the statement carrying other
callers' items.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

from stormproof._validate import int_at_least

__all__ = ["AsyncGroupCommit", "GroupCommit", "Outcome"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
_S = TypeVar("_S")

#: What a batch gives each of its items: its result, or the exception that item raises.
Outcome: TypeAlias = "ResultT | BaseException"


@dataclass(slots=True, eq=False)
class _Slot(Generic[ItemT, ResultT]):
    item: ItemT
    key: Hashable
    done: bool = False
    result: ResultT | None = None
    error: BaseException | None = None

    def settle(self, outcome: Outcome[ResultT]) -> None:
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.result = outcome
        self.done = True

    def value(self) -> ResultT:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set by settle() with no error


def _take(pending: list[_S], key: Callable[[_S], Hashable], limit: int) -> list[_S]:
    """Remove and return up to ``limit`` queued items with distinct keys, oldest first."""
    batch: list[_S] = []
    left: list[_S] = []
    keys: set[Hashable] = set()
    for slot in pending:
        slot_key = key(slot)
        if len(batch) < limit and slot_key not in keys:
            keys.add(slot_key)
            batch.append(slot)
        else:
            left.append(slot)
    pending[:] = left
    return batch


def _batch_key(key: Callable[[ItemT], Hashable] | None, item: ItemT) -> Hashable:
    """What keeps two items out of one batch: equal keys; with no ``key``, nothing."""
    return object() if key is None else key(item)


def _check_limits(max_inflight: int, max_batch: int) -> None:
    int_at_least("max_inflight", max_inflight, 1)
    int_at_least("max_batch", max_batch, 1)


def _outcomes(
    items: Sequence[ItemT],
    run_one: Callable[[ItemT], ResultT],
    run_many: Callable[[Sequence[ItemT]], Sequence[Outcome[ResultT]]],
) -> Sequence[Outcome[ResultT]]:
    """Run a batch; an exception escaping it becomes every item's outcome."""
    try:
        if len(items) == 1:
            return [run_one(items[0])]
        outcomes = run_many(items)
        _check_count(items, outcomes)
    except Exception as error:  # handed to each caller, who raises it
        return [error] * len(items)
    return outcomes


def _check_count(items: Sequence[object], outcomes: Sequence[object]) -> None:
    if len(outcomes) != len(items):
        raise RuntimeError(f"a batch of {len(items)} items gave {len(outcomes)} outcomes")


class GroupCommit(Generic[ItemT, ResultT]):
    """Group commit for threads. See the module docstring.

    Args:
        run_one: run one item (the path of a caller that finds a free slot).
        run_many: run several items in one statement; returns one outcome per item, in order
            (an exception for an item that failed on its own). If it raises, every item of the
            batch raises that exception.
        key: the identity of an item's row; items with equal keys go in separate batches
            (``None``: any items may share a batch, and ``run_many`` must handle repeats).
        max_inflight: how many statements may run at once (each on its own connection).
        max_batch: the most items one statement carries.
    """

    def __init__(
        self,
        run_one: Callable[[ItemT], ResultT],
        run_many: Callable[[Sequence[ItemT]], Sequence[Outcome[ResultT]]],
        key: Callable[[ItemT], Hashable] | None,
        *,
        max_inflight: int,
        max_batch: int,
    ) -> None:
        _check_limits(max_inflight, max_batch)
        self._run_one = run_one
        self._run_many = run_many
        self._key = key
        self._max_inflight = max_inflight
        self._max_batch = max_batch
        self._changed = threading.Condition(threading.Lock())
        self._pending: list[_Slot[ItemT, ResultT]] = []
        self._inflight = 0

    def submit(self, item: ItemT) -> ResultT:
        """Run ``item`` (alone or with others) and return its result once committed."""
        slot: _Slot[ItemT, ResultT] = _Slot(item, _batch_key(self._key, item))
        with self._changed:
            self._pending.append(slot)
            while not slot.done:
                if self._inflight < self._max_inflight and self._pending:
                    self._lead()
                else:
                    self._changed.wait()
        return slot.value()

    def _lead(self) -> None:
        """Run the next batch in this thread; called and returns with the lock held."""
        batch = _take(self._pending, _slot_key, self._max_batch)
        self._inflight += 1
        self._changed.release()
        try:
            outcomes = _outcomes([slot.item for slot in batch], self._run_one, self._run_many)
        except BaseException as error:  # interrupted: the batch's callers must not wait forever
            outcomes = [error] * len(batch)
            raise
        finally:
            self._changed.acquire()
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.settle(outcome)
            self._inflight -= 1
            self._changed.notify_all()


def _slot_key(slot: _Slot[ItemT, ResultT]) -> Hashable:
    return slot.key


@dataclass(slots=True, eq=False)
class _AsyncSlot(Generic[ItemT, ResultT]):
    item: ItemT
    key: Hashable
    future: asyncio.Future[ResultT] = field(repr=False)


def _async_slot_key(slot: _AsyncSlot[ItemT, ResultT]) -> Hashable:
    return slot.key


class AsyncGroupCommit(Generic[ItemT, ResultT]):
    """Group commit for one event loop.

    The arguments are those of :class:`GroupCommit`, with coroutine functions. :meth:`drain`
    waits for the statements still running.
    """

    def __init__(
        self,
        run_one: Callable[[ItemT], Awaitable[ResultT]],
        run_many: Callable[[Sequence[ItemT]], Awaitable[Sequence[Outcome[ResultT]]]],
        key: Callable[[ItemT], Hashable] | None,
        *,
        max_inflight: int,
        max_batch: int,
    ) -> None:
        _check_limits(max_inflight, max_batch)
        self._run_one = run_one
        self._run_many = run_many
        self._key = key
        self._max_inflight = max_inflight
        self._max_batch = max_batch
        self._pending: list[_AsyncSlot[ItemT, ResultT]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._alone = 0  # callers running their own item in their own task

    async def submit(self, item: ItemT) -> ResultT:
        """Run ``item`` (alone or with others) and return its result once committed."""
        if not self._pending and len(self._running) + self._alone < self._max_inflight:
            # A free slot and no queue: run in the caller's task, as without group commit.
            self._alone += 1
            try:
                return await self._run_one(item)
            finally:
                self._alone -= 1
                self._start_batches()
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append(_AsyncSlot(item, _batch_key(self._key, item), future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while len(self._running) + self._alone < self._max_inflight:
            # A caller cancelled while queued has nothing left to run.
            self._pending[:] = [slot for slot in self._pending if not slot.future.done()]
            if not self._pending:
                return
            batch = _take(self._pending, _async_slot_key, self._max_batch)
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_AsyncSlot[ItemT, ResultT]]) -> None:
        items = [slot.item for slot in batch]
        outcomes: Sequence[Outcome[ResultT]]
        try:
            if len(items) == 1:
                outcomes = [await self._run_one(items[0])]
            else:
                outcomes = await self._run_many(items)
                _check_count(items, outcomes)
        except asyncio.CancelledError:
            # The loop is shutting down (callers' own cancellations do not reach this task).
            for slot in batch:
                slot.future.cancel()
            raise
        except Exception as error:  # handed to each caller, who raises it
            outcomes = [error] * len(items)
        except BaseException as error:  # KeyboardInterrupt, SystemExit: callers see it, it goes on
            for slot in batch:
                if not slot.future.done():
                    slot.future.set_exception(error)
            raise
        for slot, outcome in zip(batch, outcomes, strict=True):
            if slot.future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):
                slot.future.set_exception(outcome)
            else:
                slot.future.set_result(outcome)
        task = asyncio.current_task()
        if task is not None:
            self._running.discard(task)  # so that the next batch may start from here
        self._start_batches()

    async def drain(self) -> None:
        """Wait until no statement is running and nothing is queued."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
