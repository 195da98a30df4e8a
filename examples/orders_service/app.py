"""The reference service: POST /orders, the "order placed" flow, with stormproof end to end.

Each request passes, outermost first:

1. ``LoadShedding`` -- at most ``max_concurrent`` orders in progress and ``max_queue`` waiting
   (lower priorities shed first, by ``x-priority``); the rest get ``503`` + ``Retry-After``
   at once, before costing anything;
2. ``DeadlinePropagation`` -- the caller's deadline (``X-Stormproof-Deadline-Ms``) bounds the
   whole handling, downstream retries included;
3. ``IdempotencyMiddleware`` -- one run per ``Idempotency-Key``; a resend gets the stored answer;
4. the handler: schema validation (invalid -> ``400``, and the event goes to the DLQ with the
   reason, counted), then the downstream reservation through a pipeline (total timeout ->
   retry with jittered backoff and a retry budget -> circuit breaker -> attempt timeout). On
   success the order is written to the ``orders-placed`` outbox (the side effect, one row per
   completed order) and the answer is ``201``; when the pipeline gives up, the event goes to
   the DLQ (``dlq_reason=downstream_failed``) and the answer is ``202``: accepted, parked for
   a redrive, never lost.

``GET /metrics`` serves Prometheus metrics, ``GET /healthz`` a liveness check (both exempt from
shedding). Settings come from environment variables (:mod:`.settings`).
"""

from __future__ import annotations

import contextvars
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stormproof import stores
from stormproof.events import (
    Idempotency,
    IdempotencyConfig,
    Invalid,
    QueuePolicy,
    ValidationPolicy,
    open_queue,
)
from stormproof.integrations.asgi import (
    DeadlineConfig,
    DeadlinePropagation,
    IdempotencyMiddleware,
    LoadShedding,
    SheddingConfig,
)
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.policies.breaker import BreakerConfig, CircuitBreaker
from stormproof.policies.budget import RatioBudget
from stormproof.policies.bulkhead import Bulkhead
from stormproof.policies.pipeline import (
    AttemptTimeout,
    Breaker,
    Concurrency,
    Retry,
    Strategy,
    TotalTimeout,
)
from stormproof.policies.retry import RetryPolicy
from stormproof.run.pipeline import Pipeline
from stormproof.telemetry.prometheus import PrometheusRecorder

from .downstream import FlakyDownstream
from .settings import Settings

#: The queue orders would be consumed from; its DLQ (``orders-dlq``) holds the failures.
ORDERS_QUEUE = "orders"
#: The outbox: one message per completed order (the side effect tests count).
OUTBOX_QUEUE = "orders-placed"
POLICIES = {ORDERS_QUEUE: QueuePolicy(max_receive_count=5)}
DLQ = POLICIES[ORDERS_QUEUE].dlq_for(ORDERS_QUEUE)

#: The "order placed" event (JSON Schema, draft 7 as fastjsonschema reads it).
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "order_id", "customer_id", "items", "total_cents", "currency"],
    "properties": {
        "type": {"const": "order.placed"},
        "order_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "customer_id": {"type": "string", "minLength": 1},
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["sku", "quantity"],
                "properties": {
                    "sku": {"type": "string", "minLength": 1},
                    "quantity": {"type": "integer", "minimum": 1},
                },
            },
        },
        "total_cents": {"type": "integer", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
}

# The idempotency key of the request being validated, for the dead-letter sink (which only
# receives the Invalid): a context variable keeps concurrent requests apart.
_current_key: contextvars.ContextVar[str] = contextvars.ContextVar("orders_key", default="")


def downstream_pipeline(settings: Settings, recorder: PrometheusRecorder) -> Pipeline:
    """The standard pipeline's order with timings sized for an in-process dependency.

    ``standard()`` (Polly's defaults: 30 s total, backoff from 2 s) suits a remote API; here a
    call takes milliseconds, so: 64 permits -> ``total_timeout`` -> ``max_attempts`` attempts,
    exponential backoff from 10 ms with full jitter and a retry budget of 20 % of traffic plus
    5 retries/s -> a breaker opening at 50 % failures over the last 50 calls for 1 s ->
    ``attempt_timeout``.
    """
    breaker = CircuitBreaker(
        BreakerConfig(
            window="count",
            window_size=50,
            minimum_calls=20,
            failure_rate_threshold=0.5,
            open_duration=1.0,
            half_open_probes=2,
        ),
        name="inventory",
        on_state_change=recorder.breaker_hook("inventory"),
    )
    strategies: list[Strategy] = [
        Concurrency(Bulkhead(64)),
        TotalTimeout(settings.total_timeout),
        Retry(
            RetryPolicy(
                max_attempts=settings.max_attempts,
                backoff=Exponential(base=0.01, factor=2.0, cap=0.2, jitter=Jitter.FULL),
                budget=RatioBudget(ratio=0.2, min_retries_per_second=5.0),
                rng=random.Random(settings.seed),
            )
        ),
        Breaker(breaker),
        AttemptTimeout(settings.attempt_timeout),
    ]
    return Pipeline(strategies, on_event=recorder.pipeline)


class OrdersService:
    """The whole service; an ASGI app (``await service(scope, receive, send)``)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        s = self.settings
        self.registry = CollectorRegistry()
        self.recorder = PrometheusRecorder(self.registry)
        self.orders = Counter(
            "orders_total",
            "Orders by outcome: placed, dead_lettered, invalid.",
            ("outcome",),
            registry=self.registry,
        )
        self.invalid = Counter(
            "orders_invalid_total",
            "Invalid order events by validation reason (each one dead-lettered).",
            ("reason",),
            registry=self.registry,
        )
        self.store = stores.open(s.store_url)
        self.queues = open_queue(s.queues, policies=POLICIES)
        self.validation = ValidationPolicy(ORDER_SCHEMA, dead_letter=self._dead_letter_invalid)
        self.downstream = FlakyDownstream(
            failure_rate=s.failure_rate, latency=s.latency, capacity=s.capacity, seed=s.seed
        )
        self.pipeline = downstream_pipeline(s, self.recorder)
        routes = [
            Route("/orders", self.place_order, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
        inner = Starlette(routes=routes, lifespan=self._lifespan)
        idempotent = IdempotencyMiddleware(
            inner, Idempotency(self.store, IdempotencyConfig(lease=30.0))
        )
        deadline = DeadlinePropagation(idempotent, DeadlineConfig(default_timeout=5.0))
        self.shedding = LoadShedding(
            deadline,
            SheddingConfig(
                max_concurrent=s.max_concurrent,
                max_queue=s.max_queue,
                queue_timeout=s.queue_timeout,
                retry_after=s.retry_after,
                exempt_paths=("/healthz", "/metrics"),
            ),
        )
        self.registry.register(_SheddingCollector(self.shedding))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI entry point."""
        await self.shedding(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for url in (self.settings.store_url, self.settings.queues):
            if url.startswith("sqlite:///"):
                # The SQLite back ends create the file, not its directory.
                Path(url.removeprefix("sqlite:///").split("?", 1)[0]).parent.mkdir(
                    parents=True, exist_ok=True
                )
        self.store.init()
        self.queues.init()
        try:
            yield
        finally:
            self.queues.close()
            self.store.close()

    def _dead_letter_invalid(self, invalid: Invalid) -> None:
        event = invalid.event
        body = event.decode("utf-8", "backslashreplace") if isinstance(event, bytes) else event
        self.queues.send(
            DLQ,
            body if isinstance(body, str) else json.dumps(body),
            {
                "dlq_reason": "invalid",
                "validation_reason": invalid.reason,
                "detail": invalid.detail[:500],
                "source_queue": ORDERS_QUEUE,
                "idempotency_key": _current_key.get(),
            },
            time.time(),
        )
        self.invalid.labels(invalid.reason).inc()

    async def place_order(self, request: Request) -> Response:
        """Validate, reserve downstream, record the order; or dead-letter it."""
        raw = await request.body()
        key = request.headers.get("idempotency-key", "")
        _current_key.set(key)
        passed = self.validation.filter([raw])
        if not passed:
            self.orders.labels("invalid").inc()
            return JSONResponse({"error": "invalid_event"}, status_code=400)
        event = passed[0]
        order_id = event["order_id"]
        try:
            reservation = await self.pipeline.acall(self.downstream.reserve, event)
        except Exception as error:
            # Retries, budget or breaker gave up: park the event for a redrive, answer 202.
            self.queues.send(
                DLQ,
                raw.decode("utf-8"),
                {
                    "dlq_reason": "downstream_failed",
                    "error": type(error).__name__,
                    "source_queue": ORDERS_QUEUE,
                    "idempotency_key": key,
                },
                time.time(),
            )
            self.orders.labels("dead_lettered").inc()
            return JSONResponse({"order_id": order_id, "status": "dead_lettered"}, status_code=202)
        self.queues.send(
            OUTBOX_QUEUE,
            json.dumps({"order_id": order_id, "key": key, **reservation}),
            {"idempotency_key": key},
            time.time(),
        )
        self.orders.labels("placed").inc()
        return JSONResponse(
            {"order_id": order_id, "status": "placed", **reservation},
            status_code=201,
            headers={"location": f"/orders/{order_id}"},
        )

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process answers."""
        return JSONResponse({"ok": True})

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format; queue depths are read at scrape time."""
        now = time.time()
        for queue in (DLQ, OUTBOX_QUEUE):
            self.recorder.observe_queue(self.queues, queue, now)
        return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4")


class _SheddingCollector:
    """Exports the shedding middleware's counters at scrape time."""

    def __init__(self, shedding: LoadShedding) -> None:
        self.shedding = shedding

    def collect(self) -> Iterator[Metric]:
        stats = self.shedding.stats
        family = CounterMetricFamily(
            "orders_admission", "Admission decisions of the load shedder.", labels=["decision"]
        )
        for decision in (
            "admitted",
            "queued",
            "shed_priority",
            "shed_queue",
            "shed_timeout",
            "rate_limited",
        ):
            family.add_metric([decision], getattr(stats, decision))
        yield family


def create_app(settings: Settings | None = None) -> OrdersService:
    """A new service (``uvicorn --factory examples.orders_service.app:create_app``)."""
    return OrdersService(settings)


#: The app uvicorn serves: ``uvicorn examples.orders_service.app:app``.
app = create_app()
