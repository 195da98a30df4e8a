"""Queues, dead-letter queues and redrive, on SQLite and the real PostgreSQL.

PostgreSQL (127.0.0.1:5432, database ``test``) is used when it answers; otherwise its tests are
skipped -- unless ``STORMPROOF_REQUIRE_SERVICES=1``, where a missing server is a failure. Each
test gets its own table, dropped afterwards. Time is a fake clock everywhere: nothing sleeps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.events._queue_sql import new_receipt, receipt_seq
from stormproof.events.queue import (
    DEFAULT_MAX_AGE,
    QUEUE_SCHEMA_VERSION,
    QueuePolicy,
    QueueStore,
    open_queue,
)
from stormproof.events.redrive import Redrive

POSTGRES = os.environ.get("STORMPROOF_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = 1_700_000_000.0


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def queue_url(backend: str, tmp_path: Path) -> str:
    """A fresh URL of ``backend`` for one test: its own file or table."""
    unique = uuid.uuid4().hex[:12]
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}?table=q_{unique}"
    if backend == "postgresql":
        pytest.importorskip("psycopg", reason="the postgres extra is not installed")
        if not _reachable("127.0.0.1", 5432):
            reason = "PostgreSQL is not reachable on 127.0.0.1:5432"
            if os.environ.get("STORMPROOF_REQUIRE_SERVICES") == "1":
                pytest.fail(f"{reason}, and STORMPROOF_REQUIRE_SERVICES=1 requires it")
            pytest.skip(reason)
        return f"{POSTGRES}?table=sp_q_{unique}"
    raise ValueError(backend)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return queue_url(str(request.param), tmp_path)


@pytest.fixture
def make(url: str) -> Iterator[Callable[..., Any]]:
    """Open queue stores on the test's table (initialised); the table is dropped afterwards."""
    opened: list[Any] = []

    def factory(**policies: QueuePolicy) -> Any:
        q = open_queue(url, policies=policies)
        q.init()
        opened.append(q)
        return q

    try:
        yield factory
    finally:
        if opened:
            opened[0].drop()
        for q in opened:
            q.close()


class Wall:
    """A manual wall clock; sleeping advances it and is recorded."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- basics ---------------------------------------------------------------------------------------


def test_init_is_idempotent_and_records_the_schema_version(make: Callable[..., Any]) -> None:
    q = make()
    assert isinstance(q, QueueStore)
    q.init()
    assert q.schema_version() == QUEUE_SCHEMA_VERSION


def test_send_receive_delete(make: Callable[..., Any]) -> None:
    q = make()
    sent = [q.send("jobs", f'{{"n": {i}}}', {"kind": "test"}, T0 + i) for i in range(3)]
    q.send("other", "{}", None, T0)
    assert all(len(i) == 32 for i in sent)
    got = q.receive("jobs", 10, 30.0, T0 + 5)
    assert [m.message_id for m in got] == sent  # oldest first
    assert [m.body for m in got] == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert all(m.receive_count == 1 and m.attributes == {"kind": "test"} for m in got)
    assert all(m.queue == "jobs" and m.visible_at == T0 + 35 for m in got)
    assert len({m.receipt for m in got}) == 3
    assert q.receive("jobs", 10, 30.0, T0 + 6) == []  # all in flight
    assert q.depth("jobs", T0 + 6) == (0, 3)
    for m in got:
        assert q.delete("jobs", m.receipt)
        assert not q.delete("jobs", m.receipt)
    assert q.depth("jobs", T0 + 6) == (0, 0)
    assert q.depth("other", T0 + 6) == (1, 0)


def test_a_receipt_names_its_row_but_only_the_whole_receipt_is_accepted(
    make: Callable[..., Any],
) -> None:
    q = make()
    q.send("jobs", "a", None, T0)
    q.send("jobs", "b", None, T0 + 1)
    first, second = q.receive("jobs", 2, 30.0, T0 + 2)
    seq, dot, secret = first.receipt.partition(".")
    assert dot and receipt_seq(first.receipt) == int(seq) and len(secret) == 32
    other_seq = second.receipt.partition(".")[0]
    forged = [
        f"{seq}.{'0' * 32}",  # the right row, a guessed secret
        f"{other_seq}.{secret}",  # another row with this secret
        secret,  # the secret alone, as an old-style receipt
        f"{seq}.{secret}x",
    ]
    for receipt in forged:
        assert not q.delete("jobs", receipt)
        assert not q.change_visibility("jobs", receipt, 60.0, T0 + 3)
        assert not q.dead_letter("jobs", receipt, "poison", T0 + 3)
    assert not q.delete("other", first.receipt)  # the right receipt, the wrong queue
    assert q.change_visibility("jobs", first.receipt, 60.0, T0 + 3)
    assert q.delete("jobs", first.receipt)
    assert q.dead_letter("jobs", second.receipt, "poison", T0 + 3)


def test_receipts_issued_before_they_named_their_row_still_work(
    make: Callable[..., Any], url: str
) -> None:
    q = make()
    q.send("jobs", "a", None, T0)
    (message,) = q.receive("jobs", 1, 30.0, T0 + 1)
    legacy = uuid.uuid4().hex  # what receive used to hand out
    table = q.table
    if url.startswith("sqlite"):
        conn = q._store._conn()
        conn.execute(f'UPDATE "{table}" SET receipt = ?', (legacy,))
    else:
        with q._store._statement() as cur:
            cur.execute(f'UPDATE "{table}" SET receipt = %s', (legacy,))
    assert not q.delete("jobs", message.receipt)
    assert q.change_visibility("jobs", legacy, 60.0, T0 + 2)
    assert q.delete("jobs", legacy)
    assert q.depth("jobs", T0 + 2) == (0, 0)


def test_tables_in_the_earlier_layout_keep_working(url: str) -> None:
    """Tables made before receipts named their row: AUTOINCREMENT (SQLite), a unique index on
    ids and an index on receipts. ``init`` leaves them as they are; everything still works."""
    q = open_queue(url)
    table = q.table
    serial = (
        "INTEGER PRIMARY KEY AUTOINCREMENT" if url.startswith("sqlite") else "BIGSERIAL PRIMARY KEY"
    )
    real = "REAL" if url.startswith("sqlite") else "DOUBLE PRECISION"
    ddl = [
        f'CREATE TABLE "{table}" (seq {serial}, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,'
        f" body TEXT NOT NULL, attributes TEXT NOT NULL, sent_at {real} NOT NULL,"
        f" receive_count INTEGER NOT NULL DEFAULT 0, visible_at {real} NOT NULL, receipt TEXT)",
        f'CREATE INDEX "{table}_order" ON "{table}" (queue, sent_at, seq)',
        f'CREATE INDEX "{table}_receipt" ON "{table}" (receipt)',
    ]
    if url.startswith("sqlite"):
        conn = q._store._conn()
        for statement in ddl:
            conn.execute(statement)
    else:
        with q._store._statement() as cur:
            for statement in ddl:
                cur.execute(statement)
    try:
        q.init()
        sent = [q.send("jobs", str(n), None, T0 + n) for n in range(3)]
        got = q.receive("jobs", 2, 30.0, T0 + 5)
        assert [m.message_id for m in got] == sent[:2]
        assert q.delete("jobs", got[0].receipt)
        assert q.change_visibility("jobs", got[1].receipt, 0.0, T0 + 6)
        assert [m.body for m in q.receive("jobs", 5, 30.0, T0 + 6)] == ["1", "2"]
    finally:
        q.drop()
        q.close()


@pytest.mark.parametrize(
    "receipt", ["", ".", "abc", "12", ".12", "-1.ab", "1e3.ab", "١٢.ab", "9" * 20 + ".ab"]
)
def test_strings_that_name_no_row(receipt: str) -> None:
    assert receipt_seq(receipt) is None
    assert receipt_seq(new_receipt(7)) == 7


def test_receive_respects_max_messages(make: Callable[..., Any]) -> None:
    q = make()
    for i in range(5):
        q.send("jobs", str(i), None, T0)
    assert [m.body for m in q.receive("jobs", 2, 30.0, T0)] == ["0", "1"]
    assert [m.body for m in q.receive("jobs", 2, 30.0, T0)] == ["2", "3"]
    assert q.depth("jobs", T0) == (1, 4)


def test_visibility_timeout_expiry_redelivers_with_a_new_receipt(
    make: Callable[..., Any],
) -> None:
    q = make()
    message_id = q.send("jobs", "x", None, T0)
    (first,) = q.receive("jobs", 1, 30.0, T0)
    assert q.receive("jobs", 1, 30.0, T0 + 29.9) == []
    (second,) = q.receive("jobs", 1, 30.0, T0 + 30.0)
    assert second.message_id == message_id
    assert second.receive_count == 2
    assert second.receipt != first.receipt
    # The stale receipt can neither delete nor extend; the latest one can.
    assert not q.delete("jobs", first.receipt)
    assert not q.change_visibility("jobs", first.receipt, 60.0, T0 + 31)
    assert not q.dead_letter("jobs", first.receipt, "x", T0 + 31)
    assert q.delete("jobs", second.receipt)


def test_change_visibility(make: Callable[..., Any]) -> None:
    q = make()
    q.send("jobs", "x", None, T0)
    (m,) = q.receive("jobs", 1, 30.0, T0)
    assert q.change_visibility("jobs", m.receipt, 100.0, T0 + 10)
    assert q.receive("jobs", 1, 30.0, T0 + 100) == []
    assert q.change_visibility("jobs", m.receipt, 0.0, T0 + 100)  # give it back now
    (again,) = q.receive("jobs", 1, 30.0, T0 + 100)
    assert again.receive_count == 2
    # Once the timeout has passed the message is no longer in flight: too late to extend.
    assert not q.change_visibility("jobs", again.receipt, 10.0, T0 + 130)


def test_body_and_attributes_round_trip_any_text(make: Callable[..., Any]) -> None:
    q = make()
    body = 'nul \x00 %nul% ünïcode "quotes" \n'
    q.send("jobs", body, {"k\x00": "v%00"}, T0)
    (m,) = q.receive("jobs", 1, 1.0, T0)
    assert m.body == body
    assert m.attributes == {"k\x00": "v%00"}


# -- dead-letter queues ---------------------------------------------------------------------------


def test_max_receive_count_moves_to_the_dlq(make: Callable[..., Any]) -> None:
    q = make(jobs=QueuePolicy(max_receive_count=2))
    message_id = q.send("jobs", '{"poison": true}', {"trace": "t1"}, T0)
    keeper = q.send("jobs", "fine", None, T0 + 1)
    assert len(q.receive("jobs", 10, 10.0, T0 + 1)) == 2
    assert len(q.receive("jobs", 10, 10.0, T0 + 11)) == 2
    # Third receive: both reached max_receive_count; both go to the DLQ, none is delivered.
    assert q.receive("jobs", 10, 10.0, T0 + 21) == []
    assert q.depth("jobs", T0 + 21) == (0, 0)
    assert q.depth("jobs-dlq", T0 + 21) == (2, 0)
    dead = q.peek("jobs-dlq")
    assert [m.message_id for m in dead] == [message_id, keeper]
    first = dead[0]
    assert first.body == '{"poison": true}'
    assert first.receive_count == 0
    assert first.sent_at == T0 + 21
    assert first.attributes == {
        "trace": "t1",
        "dlq_reason": "max_receive_count",
        "source_queue": "jobs",
        "receive_count": "2",
        "first_sent_at": repr(T0),
    }
    assert q.oldest_age("jobs-dlq", T0 + 30) == pytest.approx(9.0)


def test_max_age_moves_to_the_dlq_and_receive_continues_past_it(
    make: Callable[..., Any],
) -> None:
    q = make(jobs=QueuePolicy(max_age=60.0, dead_letter_queue="graveyard"))
    old = q.send("jobs", "old", None, T0)
    young = q.send("jobs", "young", None, T0 + 30)
    (m,) = q.receive("jobs", 1, 10.0, T0 + 61)
    assert m.message_id == young
    (dead,) = q.peek("graveyard")
    assert dead.message_id == old
    assert dead.attributes["dlq_reason"] == "max_age"
    assert dead.attributes["receive_count"] == "0"
    assert q.depth("jobs-dlq", T0 + 61) == (0, 0)


def test_queues_without_a_policy_never_dead_letter(make: Callable[..., Any]) -> None:
    q = make()
    q.send("jobs", "x", None, T0)
    for i in range(10):
        assert len(q.receive("jobs", 1, 1.0, T0 + 10 * DEFAULT_MAX_AGE + i)) == 1


def test_explicit_dead_letter_is_an_on_failure_destination(make: Callable[..., Any]) -> None:
    q = make()
    message_id = q.send("jobs", "bad", None, T0)
    (m,) = q.receive("jobs", 1, 30.0, T0)
    assert q.dead_letter("jobs", m.receipt, "schema: missing id", T0 + 1)
    assert not q.delete("jobs", m.receipt)  # the receipt died with the move
    (dead,) = q.peek("jobs-dlq")
    assert dead.message_id == message_id
    assert dead.attributes["dlq_reason"] == "schema: missing id"
    assert dead.attributes["receive_count"] == "1"


def test_depth_and_oldest_age(make: Callable[..., Any]) -> None:
    q = make()
    assert q.depth("jobs", T0) == (0, 0)
    assert q.oldest_age("jobs", T0) is None
    q.send("jobs", "a", None, T0)
    q.send("jobs", "b", None, T0 + 40)
    q.receive("jobs", 1, 30.0, T0 + 50)
    assert q.depth("jobs", T0 + 50) == (1, 1)
    assert q.depth("jobs", T0 + 80) == (2, 0)
    assert q.oldest_age("jobs", T0 + 100) == pytest.approx(100.0)


def test_policy_validation() -> None:
    policy = QueuePolicy()
    assert policy.max_receive_count == 5
    assert policy.max_age == DEFAULT_MAX_AGE == 4 * 86400
    assert policy.dlq_for("orders") == "orders-dlq"
    with pytest.raises(ConfigError, match="max_receive_count"):
        QueuePolicy(max_receive_count=0)
    with pytest.raises(ConfigError, match="max_age"):
        QueuePolicy(max_age=float("inf"))
    with pytest.raises(ConfigError, match="own DLQ"):
        open_queue("sqlite:///x.db", policies={"a": QueuePolicy(dead_letter_queue="a")})
    with pytest.raises(ConfigError, match="scheme"):
        open_queue("redis://localhost/0")
    assert open_queue("sqlite:///x.db").table == "stormproof_queue"  # type: ignore[attr-defined]
    assert open_queue("sqlite:///x.db?table=mine").table == "mine"  # type: ignore[attr-defined]


# -- redrive --------------------------------------------------------------------------------------


def test_redrive_moves_everything_back_at_the_bounded_rate(make: Callable[..., Any]) -> None:
    q = make(jobs=QueuePolicy())
    ids = [q.send("jobs-dlq", str(i), {"n": str(i)}, T0 + i) for i in range(35)]
    clock = Wall(T0 + 100)
    batches: list[list[str]] = []
    redrive = Redrive(q, "jobs-dlq", "jobs", rate_per_s=10.0, batch=10)
    progress = redrive.run(clock, clock.sleep, on_batch=batches.append)
    assert progress.finished and not progress.stopped
    assert (progress.moved, progress.batches, progress.remaining) == (35, 4, 0)
    assert [len(b) for b in batches] == [10, 10, 10, 5]
    # 10 at once (the burst), then one batch per second: 35 messages take 2.5 s.
    assert clock.sleeps == pytest.approx([1.0, 1.0, 0.5])
    assert progress.waited == pytest.approx(2.5)
    assert [m.message_id for m in q.peek("jobs", 100)] == ids  # same ids, oldest first
    assert q.depth("jobs-dlq", clock.now) == (0, 0)
    delivered = q.receive("jobs", 100, 30.0, clock.now)
    assert len(delivered) == 35
    assert all(m.receive_count == 1 for m in delivered)  # a fresh start after the redrive


def test_redrive_stops_and_resumes(make: Callable[..., Any]) -> None:
    q = make()
    ids = {q.send("jobs-dlq", "x", None, T0) for _ in range(25)}
    clock = Wall(T0 + 1)
    stop = threading.Event()
    redrive = Redrive(q, "jobs-dlq", "jobs", rate_per_s=100.0, batch=10)
    progress = redrive.run(clock, clock.sleep, stop=stop, on_batch=lambda _ids: stop.set())
    assert progress.stopped and not progress.finished
    assert progress.moved == 10
    progress = redrive.run(clock, clock.sleep, stop=lambda: False)
    assert progress.finished and progress.moved == 25
    assert {m.message_id for m in q.peek("jobs", 100)} == ids


def test_redrive_validation(make: Callable[..., Any]) -> None:
    q = make()
    with pytest.raises(ConfigError, match="target"):
        Redrive(q, "a", "a")
    with pytest.raises(ConfigError, match="rate_per_s"):
        Redrive(q, "a", "b", rate_per_s=0.0)
    with pytest.raises(ConfigError, match="batch"):
        Redrive(q, "a", "b", batch=0)


_REDRIVE_CHILD = """
import sys, time
from stormproof.events.queue import open_queue
from stormproof.events.redrive import Redrive

queues = open_queue(sys.argv[1])

def report(ids):
    sys.stdout.write(",".join(ids) + "\\n")
    sys.stdout.flush()

Redrive(queues, "jobs-dlq", "jobs", rate_per_s=1000.0, batch=10).run(
    time.time, time.sleep, on_batch=report
)
"""


def test_redrive_killed_mid_way_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    url = queue_url("sqlite", tmp_path)
    q = open_queue(url)
    q.init()
    now = time.time()
    ids = {q.send("jobs-dlq", f'{{"n": {i}}}', None, now) for i in range(2000)}
    child = subprocess.Popen(
        [sys.executable, "-c", _REDRIVE_CHILD, url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline().strip().split(",")
        child.send_signal(signal.SIGKILL)  # mid-way: 2000 messages at 1000/s take 2 s
        reported = set(first) | {
            i for line in child.stdout.read().splitlines() for i in line.split(",") if i
        }
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(first) == 10
    after_kill = Wall(now + 10)
    in_dlq, _ = q.depth("jobs-dlq", after_kill.now)
    in_target, _ = q.depth("jobs", after_kill.now)
    assert in_dlq + in_target == 2000  # nothing lost, nothing half-moved
    assert in_dlq > 0  # really mid-way
    assert in_target >= len(reported)  # every reported batch was committed
    # Restart: the redrive continues with what is left.
    progress = Redrive(q, "jobs-dlq", "jobs", rate_per_s=500.0, batch=50).run(
        after_kill, after_kill.sleep
    )
    assert progress.finished and progress.moved == in_dlq
    moved = [m.message_id for m in q.peek("jobs", 5000)]
    assert len(moved) == len(set(moved)) == 2000
    assert set(moved) == ids
    assert reported <= ids
    assert q.depth("jobs-dlq", after_kill.now) == (0, 0)
    q.close()


_RECEIVER_CHILD = """
import sys
from stormproof.events.queue import open_queue

queues = open_queue(sys.argv[1])
now = float(sys.argv[2])
queues.depth("jobs", now)  # connect before the start
print("ready", flush=True)
sys.stdin.readline()
got = []
while True:
    batch = queues.receive("jobs", 7, 3600.0, now)
    if not batch:
        break
    got.extend(m.message_id for m in batch)
queues.close()
print("\\n".join(got), flush=True)
"""


def test_concurrent_receivers_each_message_goes_to_exactly_one(
    make: Callable[..., Any], url: str
) -> None:
    q = make()
    ids = {q.send("jobs", str(i), None, T0) for i in range(500)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RECEIVER_CHILD, url, repr(T0 + 1)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60)[0] for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()
    assert all(child.returncode == 0 for child in children)
    received = [line for out in outputs for line in out.split()]
    assert len(received) == 500
    assert set(received) == ids
    assert q.depth("jobs", T0 + 1) == (0, 500)
    assert {m.receive_count for m in q.peek("jobs", 1000)} == {1}


# -- SQLite and PostgreSQL agree -------------------------------------------------------------------


_receive = st.tuples(
    st.just("receive"), st.sampled_from(["jobs", "jobs", "other"]), st.integers(1, 4)
)
_wait = st.tuples(st.just("wait"), st.sampled_from([5.0, 31.0, 31.0, 31.0, 200.0]), st.just(0))
# Receives and waits past the visibility timeout come often, so that messages reach the
# policy's max_receive_count and max_age within a short run.
_queue_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["jobs", "other"]), st.integers(0, 3)),
        _receive,
        _receive,
        _wait,
        _wait,
        st.tuples(st.just("delete"), st.integers(0, 5), st.just(0)),
        st.tuples(st.just("dead_letter"), st.integers(0, 5), st.just(0)),
    ),
    min_size=8,
    max_size=40,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_queue_ops)
@example(  # the third delivery is refused: max_receive_count
    ops=[("send", "jobs", 1), ("send", "jobs", 0)]
    + [("receive", "jobs", 2), ("wait", 31.0, 0)] * 3
    + [("send", "jobs", 0), ("receive", "jobs", 4)]
)
@example(  # too old: max_age, past a deliverable message
    ops=[("send", "jobs", 0), ("wait", 200.0, 0), ("send", "jobs", 2), ("receive", "jobs", 1)]
)
def test_sqlite_and_postgresql_give_the_same_answers(
    tmp_path: Path, ops: list[tuple[str, Any, Any]]
) -> None:
    """The one-statement receive on PostgreSQL, and its fall-back when a picked message is
    condemned, deliver and dead-letter exactly what SQLite does, call by call."""
    policies = {"jobs": QueuePolicy(max_receive_count=2, max_age=150.0)}
    urls = [queue_url("sqlite", tmp_path), queue_url("postgresql", tmp_path)]
    stores = [open_queue(url, policies=policies) for url in urls]
    try:
        for q in stores:
            q.init()
        now = T0
        receipts: list[list[tuple[str, str]]] = [[], []]  # per store: (queue, receipt)
        ids: list[dict[str, str]] = [{}, {}]  # per store: its message id -> a shared name
        for step, (op, a, b) in enumerate(ops):
            answers = []
            for i, q in enumerate(stores):
                if op == "send":
                    message_id = q.send(a, f"body-{step}", {"n": str(b)} if b else None, now)
                    ids[i][message_id] = f"m{step}"
                    answers.append(None)
                elif op == "receive":
                    got = q.receive(a, b, 30.0, now)
                    receipts[i] += [(a, m.receipt) for m in got]
                    answers.append(
                        [(ids[i][m.message_id], m.body, m.receive_count, m.attributes) for m in got]
                    )
                elif op in ("delete", "dead_letter") and a < len(receipts[i]):
                    queue, receipt = receipts[i][a]
                    if op == "delete":
                        answers.append(q.delete(queue, receipt))
                    else:
                        answers.append(q.dead_letter(queue, receipt, "poison", now))
                else:  # a wait, or a receipt this run never got
                    answers.append(None)
            assert answers[0] == answers[1], (step, op)
            if op == "wait":
                now += a
        for queue in ("jobs", "other", "jobs-dlq"):
            views = [
                [(ids[i][m.message_id], m.receive_count, m.attributes) for m in q.peek(queue, 100)]
                for i, q in enumerate(stores)
            ]
            assert views[0] == views[1], queue
            assert stores[0].depth(queue, now) == stores[1].depth(queue, now)
    finally:
        for q in stores:
            q.drop()
            q.close()
