"""What each arrival sends: seeded request plans with duplicates and invalid events mixed in.

An arrival schedule says *when*; a :class:`Traffic` says *what*. :func:`plan_requests` decides
every request before the run starts, from the seed alone, so two runs with the same seed send
the same bodies, keys and duplicates in the same order, whatever the target answers.

The default body is a small "order placed" event (the reference service's schema, see
``examples/orders_service``). Each request carries an ``Idempotency-Key``; a **duplicate**
resends the key and body of one of the last 64 requests (a client retrying after a timeout);
an **invalid** event breaks the schema in one of a few ways (missing field, wrong type, out of
range, not JSON) under a key of its own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stormproof._validate import finite_at_least
from stormproof.errors import ConfigError
from stormproof.sim.kernel import stream_seed

__all__ = ["PlannedRequest", "Traffic", "order_event", "plan_requests"]

#: The random stream request contents are drawn from.
TRAFFIC_STREAM = "load.traffic"
#: How far back a duplicate may reach (distinct earlier requests).
DUPLICATE_WINDOW = 64


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request of a run, decided in advance.

    Attributes:
        index: position in the run (0-based).
        at: seconds after the start at which it is due.
        method: the HTTP method.
        body: the request body, or ``None``.
        headers: extra headers (the idempotency key, the priority).
        kind: ``new``, ``duplicate`` (a resend of an earlier key) or ``invalid``.
        key: the idempotency key, if any.
        priority: the priority class sent, if any.
    """

    index: int
    at: float
    method: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]
    kind: str
    key: str | None
    priority: str | None = None


def order_event(order_id: str, rng: random.Random) -> dict[str, Any]:
    """A valid "order placed" event for ``order_id`` (the reference service's schema)."""
    items = [
        {"sku": f"sku-{rng.randrange(1, 500):03d}", "quantity": rng.randrange(1, 4)}
        for _ in range(rng.randrange(1, 4))
    ]
    return {
        "type": "order.placed",
        "order_id": order_id,
        "customer_id": f"c-{rng.randrange(1, 10_000)}",
        "items": items,
        "total_cents": rng.randrange(100, 50_000),
        "currency": "EUR",
    }


def _invalid_body(order_id: str, rng: random.Random) -> bytes:
    """A body the reference schema refuses, in one of four ways (chosen by ``rng``)."""
    event = order_event(order_id, rng)
    flavour = rng.randrange(4)
    if flavour == 0:
        del event["order_id"]
    elif flavour == 1:
        event["total_cents"] = "twelve euros"
    elif flavour == 2:
        event["items"] = []
    else:
        return b'{"type": "order.placed", "order_id": '  # truncated JSON
    return json.dumps(event, separators=(",", ":")).encode()


def _check_fraction(name: str, value: float) -> None:
    finite_at_least(name, value, 0.0)
    if value > 1.0:
        raise ConfigError(name, "must be within [0, 1]", value)


@dataclass(frozen=True, slots=True)
class Traffic:
    """What to send.

    Args:
        method: HTTP method (default ``POST``).
        duplicate_fraction: share of requests that resend an earlier key and body.
        invalid_fraction: share of requests with a schema-breaking body (and a fresh key).
        key_prefix: prefix of idempotency keys; vary it between runs against the same service,
            or every request of the second run is a replay.
        idempotency_header: the header carrying the key; ``None`` sends no key.
        priorities: ``(class, weight)`` pairs; each request names one class, drawn by weight,
            in ``priority_header``. Empty: no priority header.
        priority_header: the header naming the class (``x-priority``, as
            :class:`~stormproof.integrations.asgi.LoadShedding` reads by default).
        body: ``(order_id, rng) -> JSON value`` for valid requests; default
            :func:`order_event`. ``None`` with ``method="GET"`` sends no body.
    """

    method: str = "POST"
    duplicate_fraction: float = 0.0
    invalid_fraction: float = 0.0
    key_prefix: str = "sp"
    idempotency_header: str | None = "Idempotency-Key"
    priorities: tuple[tuple[str, float], ...] = ()
    priority_header: str = "x-priority"
    body: Callable[[str, random.Random], Any] | None = order_event

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method.isalpha():
            raise ConfigError("method", "must be an HTTP method name", self.method)
        object.__setattr__(self, "method", self.method.upper())
        _check_fraction("duplicate_fraction", self.duplicate_fraction)
        _check_fraction("invalid_fraction", self.invalid_fraction)
        if self.duplicate_fraction + self.invalid_fraction > 1.0:
            raise ConfigError(
                "duplicate_fraction",
                "plus invalid_fraction must be <= 1",
                self.duplicate_fraction + self.invalid_fraction,
            )
        for index, item in enumerate(self.priorities):
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ConfigError(f"priorities[{index}]", "must be a (class, weight) pair", item)
            finite_at_least(f"priorities[{index}].weight", item[1], 0.0)
        if self.priorities and sum(weight for _, weight in self.priorities) <= 0.0:
            raise ConfigError("priorities", "weights must not all be 0", self.priorities)
        if self.body is not None and not callable(self.body):
            raise ConfigError("body", "must be callable(order_id, rng) or None", self.body)


def plan_requests(times: Sequence[float], traffic: Traffic, seed: int) -> list[PlannedRequest]:
    """One :class:`PlannedRequest` per arrival time, drawn from the ``"load.traffic"`` stream."""
    rng = random.Random(stream_seed(seed, TRAFFIC_STREAM))
    recent: list[PlannedRequest] = []
    planned: list[PlannedRequest] = []
    classes = [name for name, _ in traffic.priorities]
    weights = [weight for _, weight in traffic.priorities]
    for index, at in enumerate(times):
        draw = rng.random()
        priority = rng.choices(classes, weights)[0] if classes else None
        if draw < traffic.duplicate_fraction and recent:
            original = recent[rng.randrange(len(recent))]
            planned.append(
                PlannedRequest(
                    index,
                    at,
                    original.method,
                    original.body,
                    _headers(traffic, original.key, priority),
                    "duplicate",
                    original.key,
                    priority,
                )
            )
            continue
        order_id = f"{traffic.key_prefix}-{seed}-{index}"
        key = order_id if traffic.idempotency_header is not None else None
        invalid = draw >= 1.0 - traffic.invalid_fraction
        if invalid:
            body: bytes | None = _invalid_body(order_id, rng)
        elif traffic.body is not None:
            body = json.dumps(traffic.body(order_id, rng), separators=(",", ":")).encode()
        else:
            body = None
        request = PlannedRequest(
            index,
            at,
            traffic.method,
            body,
            _headers(traffic, key, priority),
            "invalid" if invalid else "new",
            key,
            priority,
        )
        planned.append(request)
        recent.append(request)
        if len(recent) > DUPLICATE_WINDOW:
            recent.pop(0)
    return planned


def _headers(
    traffic: Traffic, key: str | None, priority: str | None
) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    if key is not None and traffic.idempotency_header is not None:
        headers.append((traffic.idempotency_header, key))
    if priority is not None:
        headers.append((traffic.priority_header, priority))
    return tuple(headers)
