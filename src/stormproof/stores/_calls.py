"""Store calls as values.

One call's arguments in a tuple, so that group commit (:mod:`stormproof.stores._group_commit`)
can queue it and a back end can send many of them at once.
"""

from __future__ import annotations

from typing import NamedTuple

from stormproof.stores.base import RecordStatus

__all__ = ["ClaimCall", "FinishCall", "call_key"]


class ClaimCall(NamedTuple):
    """The arguments of one ``claim``."""

    key: str
    payload_hash: str
    token: str
    now: float
    lease: float
    ttl: float


class FinishCall(NamedTuple):
    """The arguments of one ``complete`` (status completed) or ``fail`` (status failed)."""

    status: RecordStatus
    key: str
    token: str
    result: str
    now: float
    ttl: float


def call_key(call: ClaimCall | FinishCall) -> str:
    """The idempotency key a call is about."""
    return call.key
