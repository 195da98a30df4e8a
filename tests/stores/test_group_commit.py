"""Group commit's queueing (``stores/_group_commit.py``), with no database: which calls share a
batch, who runs it, and that every caller gets its own outcome.

Callers are held inside a running statement with events (never with ``sleep``), so the moment
at which others queue is fixed; the property tests then let many threads or tasks race freely
and check the invariants that must hold whatever the interleaving.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.stores._group_commit import AsyncGroupCommit, GroupCommit, Outcome

WAIT = 10.0  # seconds: a bound on waiting for another thread, never a timing assumption


class ItemFailed(Exception):
    """The failure of one item, raised to its own caller only."""


@dataclass
class Recorder:
    """Runs items (``("fail", n)`` fails on its own) and records the batches it was given."""

    batches: list[list[tuple[str, int]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    inflight: int = 0
    max_seen: int = 0

    def enter(self, items: Sequence[tuple[str, int]]) -> None:
        with self.lock:
            self.batches.append(list(items))
            self.inflight += 1
            self.max_seen = max(self.max_seen, self.inflight)

    def leave(self) -> None:
        with self.lock:
            self.inflight -= 1

    @staticmethod
    def answer(item: tuple[str, int]) -> Outcome[str]:
        if item[0] == "fail":
            return ItemFailed(item)
        return f"{item[0]}:{item[1]}"


def _value(outcome: Outcome[str]) -> str:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _key(item: tuple[str, int]) -> Hashable:
    return item[0]


# -- threads -------------------------------------------------------------------------------------


class FreeRecorder(Recorder):
    """A recorder that answers at once (threads race freely)."""

    def run_one(self, item: tuple[str, int]) -> str:
        self.enter([item])
        try:
            return _value(self.answer(item))
        finally:
            self.leave()

    def run_many(self, items: Sequence[tuple[str, int]]) -> list[Outcome[str]]:
        self.enter(items)
        try:
            return [self.answer(item) for item in items]
        finally:
            self.leave()


class HeldRecorder(FreeRecorder):
    """A recorder whose first statement waits for ``release``, so that others queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def run_one(self, item: tuple[str, int]) -> str:
        if not self.started.is_set():
            self.started.set()
            assert self.release.wait(WAIT)
        return super().run_one(item)


def _wait_until_queued(group: GroupCommit[tuple[str, int], str], count: int) -> None:
    """Block until ``count`` callers are queued (the callers are other threads)."""
    event = threading.Event()
    for _ in range(int(WAIT * 1000)):
        with group._changed:
            if len(group._pending) >= count:
                return
        event.wait(0.001)  # yield to the submitting threads; the result does not depend on it
    raise AssertionError(f"{count} callers never queued")


def _submit_in_thread(
    group: GroupCommit[tuple[str, int], str], item: tuple[str, int], out: dict[int, object]
) -> threading.Thread:
    def call() -> None:
        try:
            out[item[1]] = group.submit(item)
        except Exception as error:  # the test inspects what each caller got
            out[item[1]] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_caller_that_finds_a_free_slot_runs_alone() -> None:
    calls: list[str] = []

    def run_one(item: str) -> str:
        calls.append(f"one {item}")
        return item.upper()

    def run_many(items: Sequence[str]) -> list[Outcome[str]]:
        calls.append(f"many {items}")
        return [item.upper() for item in items]

    group = GroupCommit(run_one, run_many, None, max_inflight=1, max_batch=10)
    assert [group.submit("a"), group.submit("b")] == ["A", "B"]
    assert calls == ["one a", "one b"]


def test_callers_queued_behind_a_busy_slot_share_the_next_statement() -> None:
    recorder = HeldRecorder()
    group = GroupCommit(recorder.run_one, recorder.run_many, _key, max_inflight=1, max_batch=10)
    out: dict[int, object] = {}
    first = _submit_in_thread(group, ("a", 0), out)
    assert recorder.started.wait(WAIT)
    others = [_submit_in_thread(group, (name, n), out) for n, name in enumerate("bcd", 1)]
    _wait_until_queued(group, 3)
    recorder.release.set()
    for thread in [first, *others]:
        thread.join(WAIT)
    assert out == {0: "a:0", 1: "b:1", 2: "c:2", 3: "d:3"}
    assert recorder.batches == [[("a", 0)], [("b", 1), ("c", 2), ("d", 3)]]


def test_equal_keys_go_in_separate_batches_and_max_batch_caps_a_batch() -> None:
    recorder = HeldRecorder()
    group = GroupCommit(recorder.run_one, recorder.run_many, _key, max_inflight=1, max_batch=2)
    out: dict[int, object] = {}
    first = _submit_in_thread(group, ("a", 0), out)
    assert recorder.started.wait(WAIT)
    queued = []
    for n, name in enumerate("bbcd", 1):  # queued in this order, one at a time
        queued.append(_submit_in_thread(group, (name, n), out))
        _wait_until_queued(group, n)
    recorder.release.set()
    for thread in [first, *queued]:
        thread.join(WAIT)
    assert out == {0: "a:0", 1: "b:1", 2: "b:2", 3: "c:3", 4: "d:4"}
    # b:2 waits out b:1's batch; max_batch=2 splits the rest, oldest first.
    assert recorder.batches == [[("a", 0)], [("b", 1), ("c", 3)], [("b", 2), ("d", 4)]]


def test_each_caller_gets_its_own_failure_and_a_batch_failure_reaches_all() -> None:
    recorder = HeldRecorder()
    group = GroupCommit(recorder.run_one, recorder.run_many, _key, max_inflight=1, max_batch=10)
    out: dict[int, object] = {}
    first = _submit_in_thread(group, ("a", 0), out)
    assert recorder.started.wait(WAIT)
    others = [_submit_in_thread(group, item, out) for item in (("fail", 1), ("b", 2))]
    _wait_until_queued(group, 2)
    recorder.release.set()
    for thread in [first, *others]:
        thread.join(WAIT)
    assert out[0] == "a:0" and out[2] == "b:2"
    assert isinstance(out[1], ItemFailed)

    broken = RuntimeError("connection lost")

    def run_many(items: Sequence[tuple[str, int]]) -> list[Outcome[str]]:
        raise broken

    held = HeldRecorder()
    group = GroupCommit(held.run_one, run_many, _key, max_inflight=1, max_batch=10)
    out = {}
    first = _submit_in_thread(group, ("a", 0), out)
    assert held.started.wait(WAIT)
    others = [_submit_in_thread(group, (name, n), out) for n, name in enumerate("bc", 1)]
    _wait_until_queued(group, 2)
    held.release.set()
    for thread in [first, *others]:
        thread.join(WAIT)
    assert out == {0: "a:0", 1: broken, 2: broken}


def test_a_batch_must_answer_every_item() -> None:
    held = HeldRecorder()
    group = GroupCommit(held.run_one, lambda items: ["only one"], _key, max_inflight=1, max_batch=9)
    out: dict[int, object] = {}
    first = _submit_in_thread(group, ("a", 0), out)
    assert held.started.wait(WAIT)
    others = [_submit_in_thread(group, (name, n), out) for n, name in enumerate("bc", 1)]
    _wait_until_queued(group, 2)
    held.release.set()
    for thread in [first, *others]:
        thread.join(WAIT)
    assert isinstance(out[1], RuntimeError) and "2 items gave 1 outcomes" in str(out[1])
    assert out[2] is out[1]


@pytest.mark.parametrize(
    ("field", "limits"),
    [
        ("max_inflight", {"max_inflight": 0, "max_batch": 1}),
        ("max_batch", {"max_inflight": 1, "max_batch": 0}),
    ],
)
def test_limits_are_checked(field: str, limits: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=field):
        GroupCommit(str.upper, _upper_many, None, **limits)
    with pytest.raises(ConfigError, match=field):
        AsyncGroupCommit(_async_upper, _async_many, None, **limits)


def _upper_many(items: Sequence[str]) -> list[Outcome[str]]:
    return [item.upper() for item in items]


def _check_batches(
    recorder: Recorder, items: list[tuple[str, int]], limits: tuple[int, int]
) -> None:
    max_inflight, max_batch = limits
    ran = [item for batch in recorder.batches for item in batch]
    assert sorted(ran) == sorted(items), "every item runs exactly once"
    for batch in recorder.batches:
        assert 1 <= len(batch) <= max_batch
        assert len({name for name, _ in batch}) == len(batch), "no key twice in a batch"
    assert recorder.max_seen <= max_inflight


_ITEMS = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "fail"]), st.just(0)), max_size=40)


@settings(max_examples=40, deadline=None)
@given(items=_ITEMS, max_inflight=st.integers(1, 3), max_batch=st.integers(1, 5))
def test_threads_racing_each_get_their_own_outcome(
    items: list[tuple[str, int]], max_inflight: int, max_batch: int
) -> None:
    items = [(name, n) for n, (name, _) in enumerate(items)]
    recorder = FreeRecorder()
    group = GroupCommit(
        recorder.run_one, recorder.run_many, _key, max_inflight=max_inflight, max_batch=max_batch
    )
    out: dict[int, object] = {}
    threads = [_submit_in_thread(group, item, out) for item in items]
    for thread in threads:
        thread.join(WAIT)
    for name, n in items:
        if name == "fail":
            assert isinstance(out[n], ItemFailed) and out[n].args == ((name, n),)
        else:
            assert out[n] == f"{name}:{n}"
    _check_batches(recorder, items, (max_inflight, max_batch))
    assert not group._pending and group._inflight == 0


# -- asyncio ---------------------------------------------------------------------------------------


async def _async_upper(item: str) -> str:
    return item.upper()


async def _async_many(items: Sequence[str]) -> list[Outcome[str]]:
    return [item.upper() for item in items]


class AsyncFree(Recorder):
    """The async recorder that answers after one suspension."""

    async def run_one(self, item: tuple[str, int]) -> str:
        self.enter([item])
        try:
            await asyncio.sleep(0)
            return _value(self.answer(item))
        finally:
            self.leave()

    async def run_many(self, items: Sequence[tuple[str, int]]) -> list[Outcome[str]]:
        self.enter(items)
        try:
            await asyncio.sleep(0)
            return [self.answer(item) for item in items]
        finally:
            self.leave()


class AsyncHeld(AsyncFree):
    """The async recorder whose first statement waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run_one(self, item: tuple[str, int]) -> str:
        if not self.started.is_set():
            self.started.set()
            await self.release.wait()
        return await super().run_one(item)


def test_async_callers_queued_behind_a_busy_slot_share_the_next_statement() -> None:
    async def scenario() -> None:
        recorder = AsyncHeld()
        group = AsyncGroupCommit(
            recorder.run_one, recorder.run_many, _key, max_inflight=1, max_batch=10
        )
        first = asyncio.create_task(group.submit(("a", 0)))
        await recorder.started.wait()
        items = [("b", 1), ("fail", 2), ("b", 3), ("c", 4)]
        others = [asyncio.create_task(group.submit(item)) for item in items]
        await asyncio.sleep(0)  # let them queue
        assert len(group._pending) == 4
        recorder.release.set()
        results = await asyncio.gather(first, *others, return_exceptions=True)
        assert results[:2] == ["a:0", "b:1"] and results[3:] == ["b:3", "c:4"]
        assert isinstance(results[2], ItemFailed)
        assert recorder.batches == [
            [("a", 0)],
            [("b", 1), ("fail", 2), ("c", 4)],
            [("b", 3)],
        ]
        await group.drain()

    asyncio.run(scenario())


def test_async_cancelled_callers_leave_the_others_batch_alone() -> None:
    async def scenario() -> None:
        recorder = AsyncHeld()
        group = AsyncGroupCommit(
            recorder.run_one, recorder.run_many, _key, max_inflight=1, max_batch=10
        )
        first = asyncio.create_task(group.submit(("a", 0)))
        await recorder.started.wait()
        queued = [asyncio.create_task(group.submit((name, n))) for n, name in enumerate("bcd", 1)]
        await asyncio.sleep(0)
        queued[1].cancel()  # cancelled while queued: its item never runs
        recorder.release.set()
        assert await first == "a:0"
        await asyncio.sleep(0)  # the batch of b and d has started
        queued[0].cancel()  # cancelled while its batch runs: d still gets its answer
        assert await queued[2] == "d:3"
        for task in queued[:2]:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert recorder.batches == [[("a", 0)], [("b", 1), ("d", 3)]]
        await group.drain()
        assert not group._running and not group._pending

    asyncio.run(scenario())


def test_async_batch_failure_reaches_every_caller_of_the_batch() -> None:
    broken = RuntimeError("connection lost")

    async def scenario() -> None:
        recorder = AsyncHeld()

        async def run_many(items: Sequence[tuple[str, int]]) -> list[Outcome[str]]:
            raise broken

        group = AsyncGroupCommit(recorder.run_one, run_many, _key, max_inflight=1, max_batch=10)
        first = asyncio.create_task(group.submit(("a", 0)))
        await recorder.started.wait()
        others = [asyncio.create_task(group.submit((name, n))) for n, name in enumerate("bc", 1)]
        await asyncio.sleep(0)
        recorder.release.set()
        results = await asyncio.gather(first, *others, return_exceptions=True)
        assert results == ["a:0", broken, broken]

    asyncio.run(scenario())


@settings(max_examples=60, deadline=None)
@given(items=_ITEMS, max_inflight=st.integers(1, 3), max_batch=st.integers(1, 5))
def test_async_tasks_racing_each_get_their_own_outcome(
    items: list[tuple[str, int]], max_inflight: int, max_batch: int
) -> None:
    items = [(name, n) for n, (name, _) in enumerate(items)]

    async def scenario() -> list[object]:
        recorder = AsyncFree()
        group = AsyncGroupCommit(
            recorder.run_one,
            recorder.run_many,
            _key,
            max_inflight=max_inflight,
            max_batch=max_batch,
        )
        results = await asyncio.gather(
            *(group.submit(item) for item in items), return_exceptions=True
        )
        await group.drain()
        _check_batches(recorder, items, (max_inflight, max_batch))
        queued_keys = {name for name, _ in items[max_inflight:]}
        if max_batch > 1 and len(queued_keys) > 1:
            assert len(recorder.batches) < len(items), "queued callers shared statements"
        return results

    results = asyncio.run(scenario())
    for (name, n), result in zip(items, results, strict=True):
        if name == "fail":
            assert isinstance(result, ItemFailed)
        else:
            assert result == f"{name}:{n}"


def test_async_a_batch_must_answer_every_item() -> None:
    async def scenario() -> list[object]:
        recorder = AsyncHeld()

        async def short(items: Sequence[tuple[str, int]]) -> list[Outcome[str]]:
            return ["only one"]

        group = AsyncGroupCommit(recorder.run_one, short, _key, max_inflight=1, max_batch=10)
        first = asyncio.create_task(group.submit(("a", 0)))
        await recorder.started.wait()
        others = [asyncio.create_task(group.submit((name, n))) for n, name in enumerate("bc", 1)]
        await asyncio.sleep(0)
        recorder.release.set()
        results = await asyncio.gather(first, *others, return_exceptions=True)
        await group.drain()
        return results

    first, second, third = asyncio.run(scenario())
    assert first == "a:0"
    assert isinstance(second, RuntimeError) and "2 items gave 1 outcomes" in str(second)
    assert third is second
