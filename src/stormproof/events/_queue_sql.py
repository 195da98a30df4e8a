"""What the SQL queue back ends share: rows to messages, and ``receive``'s verdict loop.

:mod:`stormproof.events.queue_sqlite` and :mod:`stormproof.events.queue_postgres` keep the same
columns and the same rules; each keeps only its SQL, its text encoding and its transactions. The
loop here runs inside the back end's open transaction, through the three statements it is given,
so atomicity and locking stay the back end's.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from stormproof.events.queue import (
    Message,
    QueuePolicy,
    dead_letter_attributes,
    dump_attributes,
    load_attributes,
)

__all__ = [
    "COLUMNS",
    "Row",
    "dead_letter_attributes_of",
    "holding",
    "new_receipt",
    "receipt_seq",
    "receive_ready",
    "row_message",
]

#: The messages table's columns in the order :func:`row_message` reads them.
COLUMNS = "seq, id, queue, body, attributes, sent_at, receive_count, visible_at, receipt"
#: One row of :data:`COLUMNS`.
Row = tuple[Any, ...]


def new_receipt(seq: int) -> str:
    """A fresh receipt for the row ``seq``: ``"<seq>.<128 random bits in hex>"``.

    Naming the row lets ``delete``, ``change_visibility`` and ``dead_letter`` find it by its
    primary key and compare the receipt there, so the table needs no index on receipts (one
    index fewer to update on every send and receive). The random part is what makes a receipt
    unguessable and a stale one useless; receipts stay opaque to callers.
    """
    return f"{seq}.{secrets.token_hex(16)}"


def receipt_seq(receipt: str) -> int | None:
    """The row a receipt of :func:`new_receipt` names; ``None`` for any other string.

    Receipts issued before receipts named their row (a bare uuid4 hex) give ``None``: the back
    ends then look them up by the receipt column alone, as they did.
    """
    head, dot, _ = receipt.partition(".")
    if dot and 0 < len(head) <= 19 and head.isascii() and head.isdigit():
        return int(head)
    return None


def holding(queue: str, receipt: str, placeholder: str) -> tuple[str, tuple[object, ...]]:
    """The SQL condition, and its parameters, of the row of ``queue`` that holds ``receipt``.

    By primary key when the receipt names its row (:func:`new_receipt`), else by the receipt
    column alone (receipts issued before). ``placeholder`` is the driver's (``?``, ``%s``);
    ``queue`` and ``receipt`` come as the back end stores them.
    """
    seq = receipt_seq(receipt)
    p = placeholder
    if seq is None:
        return f"queue = {p} AND receipt = {p}", (queue, receipt)
    return f"seq = {p} AND queue = {p} AND receipt = {p}", (seq, queue, receipt)


def _as_stored(text: str) -> str:
    return text


def row_message(row: Row, decode: Callable[[str], str] = _as_stored) -> Message:
    """The message a row of :data:`COLUMNS` holds; ``decode`` undoes the back end's encoding."""
    _seq, message_id, queue, body, attributes, sent_at, count, visible_at, receipt = row
    return Message(
        str(message_id),
        decode(queue),
        decode(body),
        load_attributes(decode(attributes)),
        float(sent_at),
        int(count),
        float(visible_at),
        None if receipt is None else str(receipt),
    )


def dead_letter_attributes_of(message: Message, reason: str) -> str:
    """The stored attributes of ``message`` once moved to a DLQ for ``reason``."""
    return dump_attributes(
        dead_letter_attributes(
            message.attributes, reason, message.queue, message.receive_count, message.sent_at
        )
    )


def receive_ready(
    queue: str,
    policy: QueuePolicy | None,
    max_messages: int,
    visibility_timeout: float,
    now: float,
    *,
    select: Callable[[float, int, int], Sequence[Row]],
    deliver: Callable[[int, float, str], object],
    relocate: Callable[[int, str, str], object],
    decode: Callable[[str], str] = _as_stored,
) -> list[Message]:
    """Deliver up to ``max_messages`` visible messages, oldest first; dead-letter the condemned.

    Call it inside the transaction that makes the receive atomic. The statements:

    * ``select(sent_at, seq, limit)`` -- up to ``limit`` rows of :data:`COLUMNS` of ``queue``
      visible at ``now`` and after ``(sent_at, seq)``, ordered by ``(sent_at, seq)``;
    * ``deliver(seq, visible_at, receipt)`` -- hide the row until ``visible_at``, add one to its
      receive count and give it ``receipt``;
    * ``relocate(seq, dlq, attributes)`` -- move the row to queue ``dlq`` with the (stored)
      ``attributes``, restarting it at ``now``.

    Dead-lettered rows do not count towards ``max_messages``: selecting continues past them
    until enough are delivered or none is left.
    """
    delivered: list[Message] = []
    visible_at = now + visibility_timeout
    after_sent_at, after_seq = float("-inf"), -1
    while len(delivered) < max_messages:
        rows = select(after_sent_at, after_seq, max_messages - len(delivered))
        if not rows:
            break
        for row in rows:
            seq = int(row[0])
            message = row_message(row, decode)
            after_sent_at, after_seq = message.sent_at, seq
            if policy is not None:
                reason = policy.verdict(message.receive_count, message.sent_at, now)
                if reason is not None:
                    relocate(seq, policy.dlq_for(queue), dead_letter_attributes_of(message, reason))
                    continue
            receipt = new_receipt(seq)
            deliver(seq, visible_at, receipt)
            delivered.append(
                replace(
                    message,
                    receive_count=message.receive_count + 1,
                    visible_at=visible_at,
                    receipt=receipt,
                )
            )
    return delivered
