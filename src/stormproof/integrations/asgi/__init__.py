"""Pure ASGI middleware for Starlette, FastAPI and any ASGI server.

Load shedding with priorities, deadline propagation from request headers, and idempotency by
``Idempotency-Key``.

Each middleware is its own class with a frozen configuration, and they compose; a sensible
order, outermost first::

    app = LoadShedding(DeadlinePropagation(IdempotencyMiddleware(app, engine)))

Shedding goes outside so that a refused request costs nothing; the deadline goes outside the
idempotency check so that an expired request is not even claimed. Only the standard library is
needed at run time (starlette is used in the tests and docs, not imported here).
"""

from stormproof.integrations.asgi.deadline import (
    DEADLINE_HEADER,
    DeadlineConfig,
    DeadlinePropagation,
    deadline_headers,
    parse_deadline_ms,
    parse_grpc_timeout,
)
from stormproof.integrations.asgi.idempotency import (
    IdempotencyHttpConfig,
    IdempotencyMiddleware,
    StoredResponse,
)
from stormproof.integrations.asgi.shedding import LoadShedding, SheddingConfig, SheddingStats

__all__ = [
    "DEADLINE_HEADER",
    "DeadlineConfig",
    "DeadlinePropagation",
    "IdempotencyHttpConfig",
    "IdempotencyMiddleware",
    "LoadShedding",
    "SheddingConfig",
    "SheddingStats",
    "StoredResponse",
    "deadline_headers",
    "parse_deadline_ms",
    "parse_grpc_timeout",
]
