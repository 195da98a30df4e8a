"""Durable message queues with dead-letter queues (DLQ): the protocol and the message type.

The REL 2 guidance (``../shared/seeds/aws-well-architected-serverless-rel2.txt``) asks for a
dead-letter queue "to retain, investigate, and retry failed transactions", with a maximum number
of retries and a maximum record age after which a poison-pill message is set aside instead of
blocking or looping. This module gives SQS-like semantics on named queues kept in one SQL
database (SQLite: :mod:`stormproof.events.queue_sqlite`, PostgreSQL:
:mod:`stormproof.events.queue_postgres`); several queues share one table, told apart by a
``queue`` column. Amazon SQS itself is a third back end (:mod:`stormproof.events.queue_sqs`),
with the few differences its API imposes (moves are at-least-once rather than atomic)::

    q = open_queue("sqlite:////var/lib/app/q.db", policies={"orders": QueuePolicy()})
    q.init()
    q.send("orders", '{"id": 1}', None, now=time.time())
    for m in q.receive("orders", 10, visibility_timeout=30.0, now=time.time()):
        handle(m.body)
        q.delete("orders", m.receipt)  # only after success; otherwise it comes back

Semantics (every back end):

* ``receive`` atomically hides each returned message until ``now + visibility_timeout``, adds one
  to its ``receive_count`` and gives it a fresh ``receipt``. A message not deleted before the
  timeout becomes visible again (at-least-once delivery: make handlers idempotent).
* ``delete`` and ``change_visibility`` need the **latest** receipt: a consumer whose timeout
  expired and whose message was received again by someone else cannot delete it.
  ``change_visibility`` also needs the message to still be in flight.
* With a :class:`QueuePolicy` for the queue, ``receive`` **moves** (never delivers) a message
  whose ``receive_count`` already reached ``max_receive_count`` or whose age exceeds ``max_age``
  to the dead-letter queue, in the same transaction. The message keeps its id and body; its
  attributes gain ``dlq_reason`` (``max_receive_count``, ``max_age``, or the reason given to
  ``dead_letter``), ``source_queue``, ``receive_count`` and ``first_sent_at``.
  ``dead_letter(queue, receipt, reason, now)`` does the same on demand: the on-failure
  destination of a consumer that knows a message cannot succeed.
* **Every move restarts the message**: ``sent_at`` becomes the time of the move, the
  ``receive_count`` returns to 0 and the message is visible at once. So a DLQ's ``oldest_age`` is
  how long the oldest failure has waited there (alarm on it and on ``depth``), and a redriven
  message gets the full ``max_receive_count`` and ``max_age`` again. The original send time stays
  in the ``first_sent_at`` attribute, which later moves keep.
* ``move(source, target, n, now)`` moves up to ``n`` visible messages, oldest first, in one
  transaction, keeping ids: :class:`stormproof.events.redrive.Redrive` is built on it.

Times are wall-clock epoch seconds passed in by the caller, as in :mod:`stormproof.stores`.
Queues without a policy never dead-letter on ``receive`` (a DLQ normally has none).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_QUEUE_TABLE",
    "QUEUE_SCHEMA_VERSION",
    "Message",
    "QueuePolicy",
    "QueueStore",
    "open_queue",
]

#: The schema version the queue back ends record in ``stormproof_schema`` (under their table).
QUEUE_SCHEMA_VERSION = 1
#: The messages table used when the URL has no ``table`` parameter.
DEFAULT_QUEUE_TABLE = "stormproof_queue"
#: Four days: the default message retention period of Amazon SQS.
DEFAULT_MAX_AGE = 4 * 24 * 3600.0
#: Longest queue name (the SQS limit).
MAX_QUEUE_NAME = 80

#: Values of the ``dlq_reason`` attribute set by ``receive``.
REASON_MAX_RECEIVES = "max_receive_count"
REASON_MAX_AGE = "max_age"


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """When ``receive`` moves a message of a queue to its dead-letter queue.

    Attributes:
        max_receive_count: a message received this many times without being deleted is moved
            on its next receive (the SQS ``maxReceiveCount``; 5 is a common choice).
        max_age: seconds; an older message is moved instead of delivered. The default is four
            days, the default retention of SQS, so that nothing is silently kept forever.
        dead_letter_queue: the DLQ name; ``None`` means ``"<queue>-dlq"``.
    """

    max_receive_count: int = 5
    max_age: float = DEFAULT_MAX_AGE
    dead_letter_queue: str | None = None

    def __post_init__(self) -> None:
        int_at_least("max_receive_count", self.max_receive_count, 1)
        finite_above("max_age", self.max_age, 0.0)
        if self.dead_letter_queue is not None:
            check_queue_name(self.dead_letter_queue, "dead_letter_queue")

    def dlq_for(self, queue: str) -> str:
        """The dead-letter queue of ``queue``."""
        return self.dead_letter_queue or f"{queue}-dlq"

    def verdict(self, receive_count: int, sent_at: float, now: float) -> str | None:
        """Why a message must be dead-lettered instead of delivered, or ``None``."""
        if receive_count >= self.max_receive_count:
            return REASON_MAX_RECEIVES
        if now - sent_at > self.max_age:
            return REASON_MAX_AGE
        return None


@dataclass(frozen=True, slots=True)
class Message:
    """One message as stored, or as delivered by ``receive`` (then with its ``receipt``).

    Attributes:
        message_id: a uuid4 hex, kept across dead-lettering and redrive.
        queue: the queue it is in.
        body: text (JSON by convention).
        attributes: string metadata; the DLQ adds ``dlq_reason`` and friends.
        sent_at: when it was sent, or last moved to this queue (epoch seconds).
        receive_count: how many times it was received in this queue.
        visible_at: when it is (or becomes) visible to ``receive``.
        receipt: the token of the latest receive; ``delete`` needs it.
    """

    message_id: str
    queue: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    sent_at: float = 0.0
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str | None = None


@runtime_checkable
class QueueStore(Protocol):
    """What a queue back end provides; see the module docstring for the semantics."""

    url: str
    policies: dict[str, QueuePolicy]

    def init(self) -> None:
        """Create the schema if missing (idempotent) and record ``QUEUE_SCHEMA_VERSION``."""
        ...

    def schema_version(self) -> int | None:
        """The version ``init`` recorded for this table, or ``None`` before it."""
        ...

    def send(self, queue: str, body: str, attributes: Mapping[str, str] | None, now: float) -> str:
        """Append a message, visible at once; returns its id."""
        ...

    def receive(
        self, queue: str, max_messages: int, visibility_timeout: float, now: float
    ) -> list[Message]:
        """Take up to ``max_messages`` visible messages (dead-lettering per the policy)."""
        ...

    def delete(self, queue: str, receipt: str) -> bool:
        """Delete the message whose latest receipt is ``receipt``; ``False`` if there is none."""
        ...

    def change_visibility(self, queue: str, receipt: str, timeout: float, now: float) -> bool:
        """Hide an in-flight message until ``now + timeout`` (0: visible at once)."""
        ...

    def dead_letter(self, queue: str, receipt: str, reason: str, now: float) -> bool:
        """Move the message holding ``receipt`` to the queue's DLQ with ``dlq_reason=reason``."""
        ...

    def move(self, source: str, target: str, max_messages: int, now: float) -> list[str]:
        """Move up to ``max_messages`` visible messages, oldest first, atomically; their ids."""
        ...

    def depth(self, queue: str, now: float) -> tuple[int, int]:
        """``(visible, in_flight)`` message counts."""
        ...

    def oldest_age(self, queue: str, now: float) -> float | None:
        """Seconds since the oldest message was sent or moved here; ``None`` when empty."""
        ...

    def peek(self, queue: str, max_messages: int = 10) -> list[Message]:
        """The oldest messages, visible or not, without receiving them (for inspection)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# -- helpers shared by the back ends ------------------------------------------------------------


def check_queue_name(name: str, field_name: str = "queue") -> None:
    """Require a non-empty queue name of at most ``MAX_QUEUE_NAME`` characters without NUL."""
    if not isinstance(name, str) or not name or len(name) > MAX_QUEUE_NAME or "\x00" in name:
        raise ConfigError(
            field_name, f"must be a non-empty string of at most {MAX_QUEUE_NAME} characters", name
        )


def check_send(queue: str, body: str, attributes: Mapping[str, str] | None) -> dict[str, str]:
    """Validate ``send``'s arguments; returns the attributes as a plain dict."""
    check_queue_name(queue)
    if not isinstance(body, str):
        raise ConfigError("body", "must be text (str); encode JSON first", type(body).__name__)
    attrs = dict(attributes or {})
    for key, value in attrs.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError("attributes", "must map str to str", (key, value))
    return attrs


def check_receive(queue: str, max_messages: int, visibility_timeout: float) -> None:
    """Validate ``receive``'s arguments."""
    check_queue_name(queue)
    int_at_least("max_messages", max_messages, 1)
    finite_at_least("visibility_timeout", visibility_timeout, 0.0)


def check_now(now: float) -> None:
    """Require a finite time."""
    if not isinstance(now, int | float) or not math.isfinite(now):
        raise ConfigError("now", "must be a finite number of epoch seconds", now)


def dead_letter_attributes(
    attributes: dict[str, str], reason: str, source: str, receive_count: int, sent_at: float
) -> dict[str, str]:
    """The attributes of a message moved to a DLQ (``first_sent_at`` survives later moves)."""
    moved = dict(attributes)
    moved["dlq_reason"] = reason
    moved["source_queue"] = source
    moved["receive_count"] = str(receive_count)
    moved.setdefault("first_sent_at", repr(float(sent_at)))
    return moved


def dlq_of(policies: Mapping[str, QueuePolicy], queue: str) -> str:
    """The DLQ of ``queue``: its policy's, or ``"<queue>-dlq"`` without a policy."""
    policy = policies.get(queue)
    return policy.dlq_for(queue) if policy is not None else f"{queue}-dlq"


def check_policies(policies: Mapping[str, QueuePolicy] | None) -> dict[str, QueuePolicy]:
    """Validate a ``{queue: policy}`` mapping: no queue may dead-letter into itself."""
    checked: dict[str, QueuePolicy] = {}
    for queue, policy in (policies or {}).items():
        check_queue_name(queue, "policies")
        if not isinstance(policy, QueuePolicy):
            raise ConfigError("policies", f"{queue!r} must map to a QueuePolicy", policy)
        if policy.dlq_for(queue) == queue:
            raise ConfigError("dead_letter_queue", f"{queue!r} cannot be its own DLQ", queue)
        checked[queue] = policy
    return checked


_ATTRIBUTES_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def dump_attributes(attributes: Mapping[str, str]) -> str:
    """Attributes as stored: compact JSON with sorted keys."""
    if not attributes:
        return "{}"  # most messages: skip the encoder
    return _ATTRIBUTES_JSON.encode(dict(attributes))


def load_attributes(text: str) -> dict[str, str]:
    """Invert :func:`dump_attributes`."""
    if text == "{}":
        return {}
    loaded = json.loads(text)
    return {str(k): str(v) for k, v in loaded.items()}


def with_default_table(url: str, table: str = DEFAULT_QUEUE_TABLE) -> str:
    """``url`` with ``table=<table>`` appended when it names no table."""
    parts = urlsplit(url)
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    if "table" in names:
        return url
    # Append to the text rather than rebuilding with urlunsplit, which collapses the empty
    # host of sqlite:////absolute/path into sqlite://absolute/path.
    base, sep, fragment = url.partition("#")
    joined = f"{base}&table={table}" if parts.query else f"{base}?table={table}"
    return joined + sep + fragment


def open_queue(url: str, *, policies: Mapping[str, QueuePolicy] | None = None) -> QueueStore:
    """Open the queue store at ``url`` (``sqlite:///...``, ``postgresql://...`` or ``sqs://...``).

    The URL is a store URL (see :mod:`stormproof.stores`); ``?table=`` defaults to
    ``stormproof_queue``. Opening creates nothing: call ``init()``.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from stormproof.events.queue_sqlite import SQLiteQueue

        return SQLiteQueue(url, policies=policies)
    if scheme in ("postgresql", "postgres"):
        from stormproof.events.queue_postgres import PostgresQueue

        return PostgresQueue(url, policies=policies)
    if scheme == "sqs":
        from stormproof.events.queue_sqs import SQSQueue

        return SQSQueue(url, policies=policies)
    raise ConfigError(
        "url", f"scheme {scheme!r} is not supported; use sqlite, postgresql or sqs", url
    )
