"""Idempotency: run an operation once per key, and give duplicates the stored result.

The REL 2 guidance (``../shared/seeds/aws-well-architected-serverless-rel2.txt``) asks for
idempotency tokens checked with a conditional write and expired by a TTL, because every retry
policy delivers some requests twice. The flow, for each call:

1. **claim** the key in a store (a conditional insert that also takes over an expired record, a
   failed one, or one whose in-progress lease ran out because its worker died);
2. on a successful claim, **run** the function and **complete** the record with its result
   (JSON, never pickle); if it raises, **release** the record so a retry may run (or keep it as
   failed, ``on_error="keep"``);
3. a duplicate that finds a **completed** record gets the stored result without running; one that
   finds the same key with a **different payload** gets :class:`IdempotencyKeyReused`; one that
   finds the key **in progress** either gets :class:`IdempotencyInProgress` at once
   (``on_in_progress="raise"``, the Powertools behaviour) or **waits** -- polling with backoff and
   jitter -- for the result, up to ``wait_timeout`` (``"wait"``).

The lease is the in-progress protection: it must be longer than the function can take, or a
second worker will take the key over and run it again. A worker that finishes after losing its
lease cannot overwrite the new owner's record (the store checks its token); it returns its result
with an :class:`IdempotencyWarning`.

Payloads are identified by a SHA-256 of their canonical JSON: keys sorted, no whitespace
(``separators=(",", ":")``), UTF-8 without escaping, NaN and infinities refused. The
decorator's default payload is the arguments *as passed* (``{"args": [...], "kwargs": {...}}``),
so ``f(7, "x")`` and ``f(7, email="x")`` are different payloads; give ``key=`` and ``payload=``
to normalise.

A result that cannot be serialised raises :class:`IdempotencyError` after the function ran, and
the record is released (or kept as failed): give ``IdempotencyConfig.serialize`` for such types.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import random
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from stormproof._validate import finite_above
from stormproof.errors import ConfigError, StormproofError
from stormproof.policies.backoff import Backoff, Exponential, Jitter
from stormproof.stores.base import IdempotencyRecord, IdempotencyStore, RecordStatus

__all__ = [
    "Idempotency",
    "IdempotencyConfig",
    "IdempotencyError",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "IdempotencyWarning",
    "canonical_json",
    "idempotent",
    "payload_hash",
]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class IdempotencyError(StormproofError):
    """Base of the idempotency errors."""


class IdempotencyKeyReused(IdempotencyError):
    """The key was used before with a different payload: a client bug, not a duplicate."""


class IdempotencyInProgress(IdempotencyError):
    """Another run holds the key; ``retry_after`` is when its lease ends (seconds from now)."""

    def __init__(self, key: str, retry_after: float, *, waited: bool = False) -> None:
        what = "still in progress after waiting" if waited else "in progress"
        super().__init__(f"idempotency key {key!r} is {what}; retry after {retry_after:.3g} s")
        self.key = key
        self.retry_after = retry_after
        self.waited = waited


class IdempotencyWarning(UserWarning):
    """Something went wrong that did not stop the call (a lost lease, an unstored result)."""


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (sorted keys, compact, UTF-8, no NaN)."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as error:
        raise ConfigError("payload", f"must be JSON-serialisable: {error}") from None


def payload_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _default_backoff() -> Backoff:
    return Exponential(base=0.05, factor=2.0, cap=1.0, jitter=Jitter.FULL)


@dataclass(frozen=True, slots=True)
class IdempotencyConfig:
    """How idempotent calls behave.

    Args:
        ttl: seconds a completed (or failed) record stays valid (Powertools' default: 3600).
        lease: seconds an in-progress claim is protected; longer than the function can run.
        on_in_progress: ``"raise"`` or ``"wait"`` for a duplicate that finds the key in progress.
        wait_timeout: how long ``"wait"`` waits for the result before raising.
        wait_backoff: the polling schedule while waiting (default: exponential from 50 ms to
            1 s, full jitter).
        on_error: ``"delete"`` the record when the function raises (a retry may run), or
            ``"keep"`` it as failed with the error (a retry may still claim it).
        serialize / deserialize: the result's JSON hooks (default ``json.dumps`` / ``loads``).
    """

    ttl: float = 3600.0
    lease: float = 60.0
    on_in_progress: Literal["raise", "wait"] = "raise"
    wait_timeout: float = 30.0
    wait_backoff: Backoff = field(default_factory=_default_backoff)
    on_error: Literal["delete", "keep"] = "delete"
    serialize: Callable[[Any], str] = json.dumps
    deserialize: Callable[[str], Any] = json.loads

    def __post_init__(self) -> None:
        finite_above("ttl", self.ttl, 0.0)
        finite_above("lease", self.lease, 0.0)
        finite_above("wait_timeout", self.wait_timeout, 0.0)
        if self.on_in_progress not in ("raise", "wait"):
            raise ConfigError("on_in_progress", 'must be "raise" or "wait"', self.on_in_progress)
        if self.on_error not in ("delete", "keep"):
            raise ConfigError("on_error", 'must be "delete" or "keep"', self.on_error)
        if self.lease > self.ttl:
            raise ConfigError("lease", f"must be <= ttl ({self.ttl:g} s)", self.lease)


class Idempotency:
    """Runs calls idempotently against ``store``.

    Args:
        store: an :class:`~stormproof.stores.base.IdempotencyStore` (call its ``init()`` once).
        config: the behaviour (:class:`IdempotencyConfig`).
        clock: wall-clock epoch seconds (default ``time.time``); records are shared between
            processes, so this is not a monotonic clock.
        sleep / async_sleep: how ``"wait"`` waits (defaults: ``time.sleep``/``asyncio.sleep``).
        rng: jitter for the waits.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        config: IdempotencyConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(store, IdempotencyStore):
            raise ConfigError("store", "must implement the IdempotencyStore protocol", store)
        self.store = store
        self.config = config if config is not None else IdempotencyConfig()
        self.clock = clock
        self.sleep = sleep
        self.async_sleep = async_sleep
        self.rng = rng if rng is not None else random.Random()

    # -- the decision shared by sync and async ----------------------------------------------

    def _claim(self, key: str, digest: str, token: str) -> IdempotencyRecord | None:
        """Claim ``key``; ``None`` if we hold it now, else the record that holds it."""
        config = self.config
        claim = self.store.claim(
            key, digest, token, self.clock(), lease=config.lease, ttl=config.ttl
        )
        if claim.claimed:
            return None
        record = claim.record
        if record.payload_hash != digest:
            raise IdempotencyKeyReused(f"idempotency key {key!r} was used with a different payload")
        return record

    def _wait_delay(self, key: str, record: IdempotencyRecord, started: float, polls: int) -> float:
        """How long to wait before polling again; raises if waiting is not allowed or over."""
        now = self.clock()
        lease_left = max(0.0, record.lease_expires_at - now)
        if self.config.on_in_progress == "raise":
            raise IdempotencyInProgress(key, lease_left)
        waited = now - started
        if waited >= self.config.wait_timeout:
            raise IdempotencyInProgress(key, lease_left, waited=True)
        delay = self.config.wait_backoff.delay(polls, None, self.rng)
        return min(delay, self.config.wait_timeout - waited)

    def _stored(self, record: IdempotencyRecord) -> Any:
        return self.config.deserialize(record.result or "null")

    def _finish(self, key: str, token: str, result: Any) -> None:
        try:
            text = self.config.serialize(result)
        except (TypeError, ValueError) as error:
            # The function ran, but its result cannot be stored: handle it like a failure (the
            # record is released or kept as failed per on_error) and say so plainly.
            self._failed(key, token, error)
            raise IdempotencyError(
                f"idempotency key {key!r}: the result of type {type(result).__name__} is not "
                "JSON-serialisable, so it was not stored (give IdempotencyConfig.serialize)"
            ) from error
        if not self.store.complete(key, token, text, self.clock(), ttl=self.config.ttl):
            warnings.warn(
                f"idempotency key {key!r}: the lease expired before the result was stored; "
                "another run may have taken the key over (raise IdempotencyConfig.lease)",
                IdempotencyWarning,
                stacklevel=4,
            )

    def _failed(self, key: str, token: str, error: BaseException) -> None:
        if self.config.on_error == "keep" and isinstance(error, Exception):
            detail = json.dumps({"error": type(error).__name__, "message": str(error)})
            self.store.fail(key, token, detail, self.clock(), ttl=self.config.ttl)
        else:
            self.store.release(key, token)

    # -- sync and async runners -------------------------------------------------------------

    def run(self, key: str, payload: Any, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``fn(*args, **kwargs)`` once for ``key``; duplicates get the stored result."""
        digest = payload_hash(payload)
        token = uuid.uuid4().hex
        started = self.clock()
        polls = 0
        while True:
            record = self._claim(key, digest, token)
            if record is None:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:
                    self._failed(key, token, error)
                    raise
                self._finish(key, token, result)
                return result
            if record.status is RecordStatus.COMPLETED:
                return cast(R, self._stored(record))
            polls += 1
            self.sleep(self._wait_delay(key, record, started, polls))

    async def arun(
        self, key: str, payload: Any, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any
    ) -> R:
        """The ``async`` form of :meth:`run` (store calls are made directly, not in a thread)."""
        digest = payload_hash(payload)
        token = uuid.uuid4().hex
        started = self.clock()
        polls = 0
        while True:
            record = self._claim(key, digest, token)
            if record is None:
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as error:
                    self._failed(key, token, error)
                    raise
                self._finish(key, token, result)
                return result
            if record.status is RecordStatus.COMPLETED:
                return cast(R, self._stored(record))
            polls += 1
            await self.async_sleep(self._wait_delay(key, record, started, polls))


def idempotent(
    store: IdempotencyStore,
    *,
    key: Callable[..., Any] | None = None,
    payload: Callable[..., Any] | None = None,
    config: IdempotencyConfig | None = None,
    **options: Any,
) -> Callable[[F], F]:
    """Make a sync or async function idempotent.

    Args:
        store: where records live.
        key: computes the idempotency key from the call's arguments (an explicit token such as
            an ``Idempotency-Key`` header, or an order id). Default: the payload hash.
        payload: selects the part of the arguments that identifies the request, checked for key
            reuse (default: all arguments, as ``{"args": [...], "kwargs": {...}}``).
        config: :class:`IdempotencyConfig`.
        **options: passed to :class:`Idempotency` (``clock``, ``sleep``, ``async_sleep``,
            ``rng``).

    Keys are namespaced by the function's module and qualified name, so two functions never
    share records.
    """
    engine = Idempotency(store, config, **options)

    def decorate(fn: F) -> F:
        namespace = f"{fn.__module__}.{fn.__qualname__}"

        def identify(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
            body = (
                payload(*args, **kwargs)
                if payload is not None
                else {
                    "args": list(args),
                    "kwargs": kwargs,
                }
            )
            raw = key(*args, **kwargs) if key is not None else payload_hash(body)
            return f"{namespace}:{raw}", body

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                name, body = identify(args, kwargs)
                return await engine.arun(name, body, fn, *args, **kwargs)

            return cast(F, guarded_async)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            name, body = identify(args, kwargs)
            return engine.run(name, body, fn, *args, **kwargs)

        return cast(F, guarded)

    return decorate
