"""The SQS queue back end, against moto's in-process SQS (nothing leaves the machine).

SQS keeps visibility on its own clock, so these tests use visibility timeouts of 0 (visible
again at once) or long ones (hidden for the whole test) rather than advancing time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from stormproof.errors import ConfigError
from stormproof.events.queue import QUEUE_SCHEMA_VERSION, QueuePolicy, QueueStore, open_queue
from stormproof.events.queue_sqs import SQSQueue, parse_sqs_url
from stormproof.events.redrive import Redrive

moto = pytest.importorskip("moto", reason="moto is needed for the SQS tests (stormproof[test])")

T0 = 1_700_000_000.0
URL = "sqs://shop-?region=us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    with moto.mock_aws():
        yield


def make(**policies: QueuePolicy) -> Any:
    q = open_queue(URL, policies=policies)
    q.init()
    return q


def test_open_queue_gives_an_initialised_sqs_queue(aws: None) -> None:
    q = open_queue(URL, policies={"orders": QueuePolicy()})
    assert isinstance(q, SQSQueue) and isinstance(q, QueueStore)
    assert q.schema_version() is None
    q.init()
    q.init()  # idempotent
    assert q.schema_version() == QUEUE_SCHEMA_VERSION
    names = sorted(u.rsplit("/", 1)[1] for u in q._client.list_queues()["QueueUrls"])
    assert names == ["shop-orders", "shop-orders-dlq"]


def test_send_receive_delete_keeps_ids_attributes_and_order(aws: None) -> None:
    q = make()
    sent = [q.send("jobs", f'{{"n": {i}}}', {"kind": "test"}, T0 + i) for i in range(3)]
    got = q.receive("jobs", 10, 30.0, T0 + 5)
    assert sorted(m.message_id for m in got) == sorted(sent)
    assert all(m.receive_count == 1 and m.attributes == {"kind": "test"} for m in got)
    assert all(m.visible_at == T0 + 35 and m.queue == "jobs" for m in got)
    assert {m.sent_at for m in got} == {T0, T0 + 1, T0 + 2}
    assert q.receive("jobs", 10, 30.0, T0 + 6) == []  # all in flight on SQS's clock
    assert q.depth("jobs", T0 + 6) == (0, 3)
    for m in got:
        assert q.delete("jobs", m.receipt)
    assert q.depth("jobs", T0 + 6) == (0, 0)
    assert q.depth("never-created", T0) == (0, 0)


def test_receive_gathers_more_than_one_sqs_batch(aws: None) -> None:
    q = make()
    for i in range(25):
        q.send("jobs", str(i), None, T0)
    got = q.receive("jobs", 22, 60.0, T0)
    assert len(got) == 22 and len({m.message_id for m in got}) == 22
    # With a zero timeout the messages come straight back, so one SQS batch is all it takes.
    again = q.receive("jobs", 20, 0.0, T0)
    assert 0 < len(again) <= 10 and len({m.message_id for m in again}) == len(again)


def test_max_receive_count_moves_to_the_dlq_with_the_same_id(aws: None) -> None:
    q = make(jobs=QueuePolicy(max_receive_count=2))
    mid = q.send("jobs", "poison", {"k": "v"}, T0)
    for expected in (1, 2):
        (m,) = q.receive("jobs", 1, 0.0, T0 + expected)  # visible again at once
        assert m.receive_count == expected
    assert q.receive("jobs", 1, 0.0, T0 + 3) == []  # the third receive dead-letters it
    (dead,) = q.receive("jobs-dlq", 1, 60.0, T0 + 4)
    assert dead.message_id == mid and dead.body == "poison"
    assert dead.attributes["dlq_reason"] == "max_receive_count"
    assert dead.attributes["source_queue"] == "jobs"
    assert dead.attributes["receive_count"] == "2"
    assert dead.attributes["k"] == "v"
    assert float(dead.attributes["first_sent_at"]) == T0
    assert dead.sent_at == T0 + 3  # a move restarts the message


def test_max_age_moves_old_messages_and_delivers_the_rest(aws: None) -> None:
    q = make(jobs=QueuePolicy(max_age=100.0))
    old = q.send("jobs", "old", None, T0)
    new = q.send("jobs", "new", None, T0 + 90)
    got = q.receive("jobs", 10, 60.0, T0 + 150)
    assert [m.message_id for m in got] == [new]
    (dead,) = q.receive("jobs-dlq", 10, 60.0, T0 + 150)
    assert dead.message_id == old and dead.attributes["dlq_reason"] == "max_age"


def test_dead_letter_on_demand_and_unknown_receipts(aws: None) -> None:
    q = make(jobs=QueuePolicy(dead_letter_queue="failed"))
    mid = q.send("jobs", "bad", None, T0)
    (m,) = q.receive("jobs", 1, 60.0, T0)
    assert not q.dead_letter("jobs", "not-a-receipt", "handler", T0)
    assert q.dead_letter("jobs", m.receipt, "schema", T0 + 1)
    (dead,) = q.receive("failed", 1, 60.0, T0 + 2)
    assert dead.message_id == mid and dead.attributes["dlq_reason"] == "schema"
    assert q.depth("jobs", T0 + 2) == (0, 0)


def test_change_visibility_and_peek(aws: None) -> None:
    q = make()
    q.send("jobs", "x", None, T0)
    (m,) = q.receive("jobs", 1, 600.0, T0)
    assert q.receive("jobs", 1, 600.0, T0) == []
    assert q.change_visibility("jobs", m.receipt, 0.0, T0)
    (again,) = q.peek("jobs", 5)
    assert again.body == "x" and again.receive_count == 2  # peeking is a receive on SQS
    assert q.peek("absent") == []
    assert q.oldest_age("jobs", T0) is None


def test_redrive_moves_everything_back_keeping_ids(aws: None) -> None:
    q = make(jobs=QueuePolicy(max_receive_count=1))
    ids = {q.send("jobs", str(i), None, T0) for i in range(12)}
    for m in q.receive("jobs", 12, 60.0, T0):
        assert q.dead_letter("jobs", m.receipt, "handler", T0)
    assert q.depth("jobs-dlq", T0)[0] == 12
    slept: list[float] = []
    clock = iter(T0 + i for i in range(1000))
    result = Redrive(q, "jobs-dlq", "jobs", rate_per_s=5.0, batch=5).run(
        lambda: next(clock), slept.append, threading.Event()
    )
    assert result.moved == 12
    back = q.receive("jobs", 20, 60.0, T0 + 50)
    assert {m.message_id for m in back} == ids


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("sqs://bad.prefix", "prefix"),
        ("sqs://?region=us_east_1!", "region"),
        ("sqs://?endpoint_url=ftp://x", "endpoint_url"),
        ("sqs://?colour=blue", "colour"),
        ("sqs://?region=a&region=b", "region"),
        ("sqs://p/path", "url"),
    ],
)
def test_bad_urls_name_the_field(url: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sqs_url(url)
    assert caught.value.field == field


def test_queue_names_must_suit_sqs(aws: None) -> None:
    q = make()
    with pytest.raises(ConfigError) as caught:
        q.send("has space", "x", None, T0)
    assert caught.value.field == "queue"
    with pytest.raises(ConfigError) as empty:
        q.send("jobs", "", None, T0)
    assert empty.value.field == "body"
