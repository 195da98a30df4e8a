"""Queues with dead-letter queues on Amazon SQS (boto3, the ``aws`` extra).

    q = open_queue("sqs://shop-?region=eu-west-1", policies={"orders": QueuePolicy()})
    q.init()   # creates shop-orders and shop-orders-dlq if missing

The URL is ``sqs://PREFIX?parameters``: every stormproof queue ``name`` is the SQS queue
``PREFIX + name`` (the prefix may be empty: ``sqs://?region=us-east-1``). Parameters:
``region`` and ``endpoint_url`` (for LocalStack, ElasticMQ or moto's server), as for the
DynamoDB store. Credentials come from boto3's usual chain, never from the URL.

The semantics of :mod:`stormproof.events.queue` hold, with the differences SQS imposes:

* **Dead-lettering is done by stormproof, not by SQS's redrive policy**, so that a message in the
  DLQ carries the same ``dlq_reason``/``source_queue``/``receive_count``/``first_sent_at``
  attributes and keeps its stormproof ``message_id`` (kept in a message attribute, since SQS gives
  every copy a new id of its own). Do not also set a ``RedrivePolicy`` on queues stormproof owns.
* **Moves are at-least-once, not atomic.** SQS has no transaction across queues: a move sends
  the copy first and deletes the original after, so a process killed between the two leaves the
  message in both queues -- duplicated, never lost. Consumers are idempotent anyway (SQS standard
  queues deliver at least once).
* **Times.** ``now`` is used for ``sent_at`` and ``max_age`` (kept in a message attribute, so
  they agree with the other back ends), but visibility is SQS's own server clock: a visibility
  timeout is rounded up to whole seconds (SQS's unit, at most 12 hours).
* ``delete`` with a stale receipt cannot be detected: SQS accepts the call (AWS: "the request
  succeeds, but the message might not be deleted"). ``dead_letter`` needs a receipt this process
  received (it needs the body, which SQS does not return for a receipt).
* ``peek`` is a receive with a zero visibility timeout: SQS has no way to look without
  receiving, so peeking counts towards ``receive_count``. ``oldest_age`` returns ``None``: SQS
  exposes the age of the oldest message only as the CloudWatch metric
  ``ApproximateAgeOfOldestMessage``, which is where to alarm on it. ``depth`` is SQS's
  approximate count.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from stormproof._aws_url import check_endpoint_url, check_region, query_parameters
from stormproof.errors import ConfigError
from stormproof.events.queue import (
    QUEUE_SCHEMA_VERSION,
    Message,
    QueuePolicy,
    check_now,
    check_policies,
    check_queue_name,
    check_receive,
    check_send,
    dead_letter_attributes,
    dlq_of,
)

__all__ = ["SQSURL", "SQSQueue", "parse_sqs_url"]

_PARAMS: Final = ("region", "endpoint_url")
_NAME = re.compile(r"[A-Za-z0-9_\-]{1,80}")
#: SQS's largest visibility timeout (12 hours) and batch size.
_MAX_VISIBILITY: Final = 43_200
_SQS_BATCH: Final = 10
#: Message attributes stormproof keeps on every SQS message.
_ID: Final = "stormproof_id"
_ATTRS: Final = "stormproof_attributes"
_SENT: Final = "stormproof_sent_at"
#: The queue tag ``init`` writes, so ``schema_version`` can tell an initialised queue.
_SCHEMA_TAG: Final = "stormproof-schema"
#: How many receipts ``dead_letter`` remembers (the newest ones).
_RECEIPTS_KEPT: Final = 10_000


@dataclass(frozen=True, slots=True)
class SQSURL:
    """A parsed ``sqs://`` URL."""

    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None


def parse_sqs_url(url: str) -> SQSURL:
    """Parse and validate ``sqs://PREFIX?...``; a ConfigError names the bad field."""
    if not isinstance(url, str):
        raise ConfigError("url", "must be a string", url)
    parts = urlsplit(url)
    if parts.scheme != "sqs":
        raise ConfigError("url", "must start with sqs://", url)
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError("url", "must be sqs://PREFIX?parameters (no path or fragment)", url)
    prefix = unquote(parts.netloc)
    if prefix and not _NAME.fullmatch(prefix):
        raise ConfigError("prefix", "must be letters, digits, - and _ (at most 80)", prefix)
    given = query_parameters(url, parts.query, _PARAMS, "the sqs queue")
    region = check_region(given.get("region"))
    endpoint = check_endpoint_url(given.get("endpoint_url"))
    return SQSURL(prefix, region, endpoint)


def _boto3() -> Any:
    try:
        return importlib.import_module("boto3")
    except ImportError:
        raise ConfigError(
            "url", "the sqs queue needs boto3: pip install 'stormproof[aws]'", "boto3"
        ) from None


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


class SQSQueue:
    """Named stormproof queues as SQS queues; see the module docstring for the differences."""

    def __init__(self, url: str, *, policies: Mapping[str, QueuePolicy] | None = None) -> None:
        self.url = url
        self.policies = check_policies(policies)
        self.config = parse_sqs_url(url)
        for queue in self.policies:
            self._sqs_name(queue)
            self._sqs_name(dlq_of(self.policies, queue))
        kwargs: dict[str, str] = {}
        if self.config.region:
            kwargs["region_name"] = self.config.region
        if self.config.endpoint_url:
            kwargs["endpoint_url"] = self.config.endpoint_url
        self._client: Any = _boto3().client("sqs", **kwargs)
        self._urls: dict[str, str] = {}
        self._received: OrderedDict[str, Message] = OrderedDict()

    # -- names and queue URLs -------------------------------------------------------------------

    def _sqs_name(self, queue: str) -> str:
        check_queue_name(queue)
        name = self.config.prefix + queue
        if not _NAME.fullmatch(name):
            raise ConfigError(
                "queue", "prefix + name must be letters, digits, - and _ (at most 80) on SQS", name
            )
        return name

    def _queue_url(self, queue: str, *, create: bool = True) -> str | None:
        known = self._urls.get(queue)
        if known is not None:
            return known
        name = self._sqs_name(queue)
        errors = self._client.exceptions
        try:
            found: str = self._client.get_queue_url(QueueName=name)["QueueUrl"]
        except errors.QueueDoesNotExist:
            if not create:
                return None
            # CreateQueue is idempotent for identical attributes, so racing creators agree.
            found = self._client.create_queue(
                QueueName=name, tags={_SCHEMA_TAG: str(QUEUE_SCHEMA_VERSION)}
            )["QueueUrl"]
        self._urls[queue] = found
        return found

    def _url(self, queue: str) -> str:
        url = self._queue_url(queue)
        assert url is not None  # create=True always yields one
        return url

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create every queue named by the policies, and their DLQs, tagged with the version."""
        for queue in self.policies:
            for name in (queue, dlq_of(self.policies, queue)):
                url = self._url(name)
                self._client.tag_queue(QueueUrl=url, Tags={_SCHEMA_TAG: str(QUEUE_SCHEMA_VERSION)})

    def schema_version(self) -> int | None:
        """The version tag of the policies' queues (``None`` if one is missing or untagged)."""
        versions: set[str] = set()
        for queue in self.policies:
            url = self._queue_url(queue, create=False)
            if url is None:
                return None
            tags = self._client.list_queue_tags(QueueUrl=url).get("Tags", {})
            if _SCHEMA_TAG not in tags:
                return None
            versions.add(tags[_SCHEMA_TAG])
        # Without policies there is no queue to ask: SQS keeps no schema of its own.
        return min((int(version) for version in versions), default=None)

    # -- messages --------------------------------------------------------------------------------

    def _send(
        self, queue: str, message_id: str, body: str, attrs: Mapping[str, str], now: float
    ) -> None:
        self._client.send_message(
            QueueUrl=self._url(queue),
            MessageBody=body,
            MessageAttributes={
                _ID: _string(message_id),
                _ATTRS: _string(json.dumps(dict(attrs), sort_keys=True, separators=(",", ":"))),
                _SENT: _string(repr(float(now))),
            },
        )

    def send(self, queue: str, body: str, attributes: Mapping[str, str] | None, now: float) -> str:
        """Send a message, visible at once; returns its stormproof id."""
        attrs = check_send(queue, body, attributes)
        check_now(now)
        if not body:
            # SQS rejects empty bodies; refuse clearly instead of failing inside botocore.
            raise ConfigError("body", "must not be empty on SQS", body)
        message_id = uuid.uuid4().hex
        self._send(queue, message_id, body, attrs, now)
        return message_id

    def _message(self, queue: str, raw: Mapping[str, Any]) -> Message:
        attributes = raw.get("MessageAttributes", {})

        def text(name: str, default: str) -> str:
            value = attributes.get(name)
            return str(value["StringValue"]) if value else default

        loaded = json.loads(text(_ATTRS, "{}"))
        return Message(
            text(_ID, str(raw["MessageId"])),
            queue,
            str(raw["Body"]),
            {str(k): str(v) for k, v in loaded.items()},
            float(text(_SENT, "0")),
            int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            0.0,
            str(raw["ReceiptHandle"]),
        )

    def _remember(self, message: Message) -> None:
        assert message.receipt is not None
        self._received[message.receipt] = message
        while len(self._received) > _RECEIPTS_KEPT:
            self._received.popitem(last=False)

    def _relocate(
        self, message: Message, target: str, attrs: Mapping[str, str], now: float
    ) -> None:
        """Copy first, then delete: a crash in between duplicates, never loses."""
        self._send(target, message.message_id, message.body, attrs, now)
        assert message.receipt is not None
        self._client.delete_message(
            QueueUrl=self._url(message.queue), ReceiptHandle=message.receipt
        )
        self._received.pop(message.receipt, None)

    def _raw_receive(self, queue: str, n: int, visibility: int) -> list[Message]:
        response = self._client.receive_message(
            QueueUrl=self._url(queue),
            MaxNumberOfMessages=min(_SQS_BATCH, n),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        return [self._message(queue, raw) for raw in response.get("Messages", [])]

    def receive(
        self, queue: str, max_messages: int, visibility_timeout: float, now: float
    ) -> list[Message]:
        """Receive up to ``max_messages``, moving to the DLQ those the policy condemns."""
        check_receive(queue, max_messages, visibility_timeout)
        check_now(now)
        visibility = min(_MAX_VISIBILITY, math.ceil(visibility_timeout))
        policy = self.policies.get(queue)
        delivered: list[Message] = []
        while len(delivered) < max_messages:
            batch = self._raw_receive(queue, max_messages - len(delivered), visibility)
            if not batch:
                break
            if visibility == 0:
                # Visible again at once: another round would re-receive these very messages
                # and void the receipts just handed out, so one SQS batch is the answer.
                max_messages = len(delivered) + len(batch)
            for message in batch:
                # SQS counts this receive already; the policy judges the count before it.
                verdict = (
                    policy.verdict(message.receive_count - 1, message.sent_at, now)
                    if policy is not None
                    else None
                )
                if verdict is None:
                    # SQS's own clock hides it; this is when it would be visible by ``now``'s.
                    message = replace(message, visible_at=now + visibility)
                    self._remember(message)
                    delivered.append(message)
                    continue
                moved = dead_letter_attributes(
                    message.attributes, verdict, queue, message.receive_count - 1, message.sent_at
                )
                self._relocate(message, dlq_of(self.policies, queue), moved, now)
        return delivered

    def delete(self, queue: str, receipt: str) -> bool:
        """Delete by receipt: ``True`` unless malformed (SQS cannot report a stale one)."""
        check_queue_name(queue)
        try:
            self._client.delete_message(QueueUrl=self._url(queue), ReceiptHandle=receipt)
        except self._client.exceptions.ReceiptHandleIsInvalid:
            return False
        self._received.pop(receipt, None)
        return True

    def change_visibility(self, queue: str, receipt: str, timeout: float, now: float) -> bool:
        """ChangeMessageVisibility; ``False`` if the message is not in flight any more."""
        check_queue_name(queue)
        check_now(now)
        seconds = min(_MAX_VISIBILITY, math.ceil(timeout))
        try:
            self._client.change_message_visibility(
                QueueUrl=self._url(queue), ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except self._client.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if "NotInflight" in code or "ReceiptHandle" in code or "InvalidParameter" in code:
                return False
            raise
        return True

    def dead_letter(self, queue: str, receipt: str, reason: str, now: float) -> bool:
        """Move a message this process received to the DLQ; ``False`` for an unknown receipt."""
        check_queue_name(queue)
        check_now(now)
        message = self._received.get(receipt)
        if message is None or message.queue != queue:
            return False
        moved = dead_letter_attributes(
            message.attributes, reason, queue, message.receive_count, message.sent_at
        )
        self._relocate(message, dlq_of(self.policies, queue), moved, now)
        return True

    def move(self, source: str, target: str, max_messages: int, now: float) -> list[str]:
        """Move up to ``max_messages`` messages, keeping ids (at-least-once; see the module)."""
        check_queue_name(source)
        check_queue_name(target, "target")
        check_now(now)
        moved: list[str] = []
        while len(moved) < max_messages:
            batch = self._raw_receive(source, max_messages - len(moved), 30)
            if not batch:
                break
            for message in batch:
                self._relocate(message, target, message.attributes, now)
                moved.append(message.message_id)
        return moved

    def depth(self, queue: str, now: float) -> tuple[int, int]:
        """SQS's approximate ``(visible, in_flight)`` counts."""
        check_now(now)
        url = self._queue_url(queue, create=False)
        if url is None:
            return (0, 0)
        attributes = self._client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def oldest_age(self, queue: str, now: float) -> float | None:
        """Always ``None``: use CloudWatch's ``ApproximateAgeOfOldestMessage`` on SQS."""
        check_queue_name(queue)
        check_now(now)
        return None

    def peek(self, queue: str, max_messages: int = 10) -> list[Message]:
        """Receive with a zero visibility timeout (it counts as a receive on SQS)."""
        check_receive(queue, max_messages, 0.0)
        if self._queue_url(queue, create=False) is None:
            return []
        return self._raw_receive(queue, max_messages, 0)

    def close(self) -> None:
        """Release the client's connections."""
        self._client.close()
