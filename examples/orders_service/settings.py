"""The reference service's settings, read from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError

#: Where the service keeps its records when STORMPROOF_STORE_URL is not set.
DEFAULT_DB = Path("build/orders_service/orders.db")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the service; :meth:`from_env` reads them from ``ORDERS_*`` variables.

    Args:
        store_url: the idempotency store (``STORMPROOF_STORE_URL``): ``postgresql://...`` or
            ``sqlite:///...`` (the fallback: a SQLite file under ``build/orders_service``).
        queue_url: where the outbox and the dead-letter queue live (``ORDERS_QUEUE_URL``);
            default: the same database as the store.
        failure_rate: share of downstream calls that fail (``ORDERS_FAILURE_RATE``).
        latency: mean downstream latency in seconds at low load (``ORDERS_LATENCY``).
        capacity: downstream calls in flight at which latency has doubled
            (``ORDERS_CAPACITY``): the downstream slows down under load, as real ones do.
        seed: seeds the downstream's draws and the retry jitter (``ORDERS_SEED``).
        max_concurrent / max_queue / queue_timeout / retry_after: load shedding
            (``ORDERS_MAX_CONCURRENT``, ``ORDERS_MAX_QUEUE``, ``ORDERS_QUEUE_TIMEOUT``,
            ``ORDERS_RETRY_AFTER``).
        attempt_timeout / total_timeout / max_attempts: the downstream pipeline
            (``ORDERS_ATTEMPT_TIMEOUT``, ``ORDERS_TOTAL_TIMEOUT``, ``ORDERS_MAX_ATTEMPTS``).
    """

    store_url: str = f"sqlite:///{DEFAULT_DB}"
    queue_url: str | None = None
    failure_rate: float = 0.1
    latency: float = 0.01
    capacity: int = 16
    seed: int = 7
    max_concurrent: int = 32
    max_queue: int = 32
    queue_timeout: float = 0.5
    retry_after: float = 1.0
    attempt_timeout: float = 0.25
    total_timeout: float = 1.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if not self.store_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError("store_url", "must be sqlite:/// or postgresql://", self.store_url)
        finite_at_least("failure_rate", self.failure_rate, 0.0)
        if self.failure_rate > 1.0:
            raise ConfigError("failure_rate", "must be within [0, 1]", self.failure_rate)
        finite_above("latency", self.latency, 0.0)
        int_at_least("capacity", self.capacity, 1)
        int_at_least("max_concurrent", self.max_concurrent, 1)
        int_at_least("max_queue", self.max_queue, 0)
        finite_above("queue_timeout", self.queue_timeout, 0.0)
        finite_at_least("retry_after", self.retry_after, 0.0)
        finite_above("attempt_timeout", self.attempt_timeout, 0.0)
        finite_at_least("total_timeout", self.total_timeout, self.attempt_timeout)
        int_at_least("max_attempts", self.max_attempts, 1)

    @property
    def queues(self) -> str:
        """The queue store URL (the store's database unless ``queue_url`` is set)."""
        if self.queue_url is not None:
            return self.queue_url
        # A ?table= of the store would name the records table: the queue keeps its own.
        return self.store_url.split("?", 1)[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (default ``os.environ``); unset variables keep defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if "STORMPROOF_STORE_URL" in env:
            values["store_url"] = env["STORMPROOF_STORE_URL"]
        if "ORDERS_QUEUE_URL" in env:
            values["queue_url"] = env["ORDERS_QUEUE_URL"]
        casts = {
            "failure_rate": float,
            "latency": float,
            "capacity": int,
            "seed": int,
            "max_concurrent": int,
            "max_queue": int,
            "queue_timeout": float,
            "retry_after": float,
            "attempt_timeout": float,
            "total_timeout": float,
            "max_attempts": int,
        }
        for name, cast in casts.items():
            variable = f"ORDERS_{name.upper()}"
            if variable in env:
                try:
                    values[name] = cast(env[variable])
                except ValueError:
                    raise ConfigError(
                        variable, f"must be a{'n int' if cast is int else ' number'}", env[variable]
                    ) from None
        return cls(**values)  # type: ignore[arg-type]
