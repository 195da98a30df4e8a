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

**Renewing the lease.** A function that may run longer than its lease renews it from inside:
:func:`current_lease` returns the :class:`IdempotencyLease` of the guarded call running in the
current context, whose ``renew()`` extends the in-progress claim (``store.extend``) and whose
``heartbeat()`` does so only when ``IdempotencyConfig.renew_every`` has passed since the last
renewal, so it can be called in every iteration of a loop. Both return ``False`` once another run
has taken the key over (the claim is fenced): stop the work then. Nothing renews in the
background: no thread or task is started.

**Async store calls.** ``arun`` (and the decorator on ``async def``) await an async store
(:class:`~stormproof.stores.aio.AsyncIdempotencyStore`, from ``stores.open_async``) natively: a
PostgreSQL or Redis round trip never holds the event loop. A blocking store is called from the
event loop by default (``store_calls="inline"``): every store call holds the loop for one round
trip, which is fine for the memory and SQLite stores. ``Idempotency(..., store_calls="thread")``
runs each call of a blocking store in ``asyncio.to_thread`` instead. Either way a store call that
has started is finished even if the calling task is cancelled, and a key claimed for a cancelled
caller is released at once. An async store serves only ``arun``: ``run`` and the decorator on a
plain function need a blocking store.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import inspect
import json
import random
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from stormproof._validate import finite_above, optional_positive
from stormproof.errors import ConfigError, StormproofError
from stormproof.policies.backoff import Backoff, Exponential, Jitter
from stormproof.stores.aio import AsyncIdempotencyStore, ThreadedStore, is_async_store
from stormproof.stores.base import Claim, IdempotencyRecord, IdempotencyStore, RecordStatus

__all__ = [
    "Idempotency",
    "IdempotencyConfig",
    "IdempotencyError",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "IdempotencyLease",
    "IdempotencyWarning",
    "canonical_json",
    "current_lease",
    "idempotent",
    "payload_hash",
]

R = TypeVar("R")
T = TypeVar("T")
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


# One encoder, built once: json.dumps with non-default options builds a new JSONEncoder on every
# call, which was a quarter of the cost of hashing a small payload. It holds no per-call state.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (sorted keys, compact, UTF-8, no NaN)."""
    try:
        return _CANONICAL.encode(value)
    except (TypeError, ValueError) as error:
        raise ConfigError("payload", f"must be JSON-serialisable: {error}") from None


def payload_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _new_token() -> str:
    """A fresh claim token: 128 random bits (``uuid4`` costs five times as much for 122)."""
    return secrets.token_hex(16)


def _default_backoff() -> Backoff:
    return Exponential(base=0.05, factor=2.0, cap=1.0, jitter=Jitter.FULL)


@dataclass(frozen=True, slots=True)
class IdempotencyConfig:
    """How idempotent calls behave.

    Args:
        ttl: seconds a completed (or failed) record stays valid (Powertools' default: 3600).
        lease: seconds an in-progress claim is protected; longer than the function can run,
            or renewed from inside it (:func:`current_lease`).
        on_in_progress: ``"raise"`` or ``"wait"`` for a duplicate that finds the key in progress.
        wait_timeout: how long ``"wait"`` waits for the result before raising.
        wait_backoff: the polling schedule while waiting (default: exponential from 50 ms to
            1 s, full jitter).
        on_error: ``"delete"`` the record when the function raises (a retry may run), or
            ``"keep"`` it as failed with the error (a retry may still claim it).
        serialize / deserialize: the result's JSON hooks (default ``json.dumps`` / ``loads``).
        renew_every: how often :meth:`IdempotencyLease.heartbeat` renews the lease (seconds
            since the last renewal); default ``None``, a third of ``lease``. Must be below
            ``lease``.
    """

    ttl: float = 3600.0
    lease: float = 60.0
    on_in_progress: Literal["raise", "wait"] = "raise"
    wait_timeout: float = 30.0
    wait_backoff: Backoff = field(default_factory=_default_backoff)
    on_error: Literal["delete", "keep"] = "delete"
    serialize: Callable[[Any], str] = json.dumps
    deserialize: Callable[[str], Any] = json.loads
    renew_every: float | None = None

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
        optional_positive("renew_every", self.renew_every)
        if self.renew_every is not None and self.renew_every >= self.lease:
            raise ConfigError(
                "renew_every",
                f"must be < lease ({self.lease:g} s), or the lease lapses first",
                self.renew_every,
            )

    @property
    def renew_interval(self) -> float:
        """The seconds between heartbeat renewals: ``renew_every``, or a third of the lease."""
        return self.renew_every if self.renew_every is not None else self.lease / 3.0


#: The claim of the guarded call running in this context (see :func:`current_lease`).
_CURRENT_LEASE: contextvars.ContextVar[IdempotencyLease | None] = contextvars.ContextVar(
    "stormproof_idempotency_lease", default=None
)


def current_lease() -> IdempotencyLease | None:
    """The :class:`IdempotencyLease` of the guarded call running in this context, or ``None``.

    Set while :meth:`Idempotency.run` / :meth:`~Idempotency.arun` (or an ``@idempotent``
    function) runs the function, including in tasks it starts (they copy the context); not in
    threads it starts -- pass the lease to them.
    """
    return _CURRENT_LEASE.get()


class IdempotencyLease:
    """The in-progress claim of one guarded call, to renew from inside a long-running function.

    ``renew()`` extends the lease to ``lease`` seconds from now; ``heartbeat()`` does the same
    only when ``IdempotencyConfig.renew_every`` has passed since the last renewal (or claim), so
    a loop can call it on every iteration at the cost of a clock read. Both return ``False`` once
    the claim is lost -- another run took the key over after the lease lapsed, so this run is
    fenced and its result will not be stored -- and ``True`` while it holds. A lapsed lease that
    nobody has taken over yet can still be renewed, as it could still be completed.
    """

    __slots__ = ("_engine", "_lost", "_renewed_at", "expires_at", "key", "token")

    def __init__(self, engine: Idempotency, key: str, token: str, claimed_at: float) -> None:
        self._engine = engine
        self.key = key
        self.token = token
        #: When the lease ends as far as this run knows (epoch seconds, the engine's clock).
        self.expires_at = claimed_at + engine.config.lease
        self._renewed_at = claimed_at
        self._lost = False

    @property
    def lost(self) -> bool:
        """Whether a renewal found the claim taken over (fenced)."""
        return self._lost

    def remaining(self) -> float:
        """Seconds left on the lease by the engine's clock (negative once it has lapsed)."""
        return self.expires_at - self._engine.clock()

    def _lease(self, lease: float | None) -> float:
        if lease is None:
            return self._engine.config.lease
        finite_above("lease", lease, 0.0)
        return lease

    def _renewed(self, ok: bool, now: float, lease: float) -> bool:
        if ok:
            self._renewed_at, self.expires_at = now, now + lease
        else:
            self._lost = True
        return ok

    def renew(self, lease: float | None = None) -> bool:
        """Extend the lease to ``lease`` (default: the configured lease) seconds from now."""
        if self._lost:
            return False  # a token never regains a key: no need to ask the store
        seconds = self._lease(lease)
        store = self._engine._blocking_store("renew()")
        now = self._engine.clock()
        return self._renewed(store.extend(self.key, self.token, now, lease=seconds), now, seconds)

    async def arenew(self, lease: float | None = None) -> bool:
        """:meth:`renew` for async code.

        Awaits an async store; calls a blocking one as the engine's ``store_calls`` says.
        """
        if self._lost:
            return False
        seconds = self._lease(lease)
        now = self._engine.clock()
        ok = await self._engine._store_call("extend", self.key, self.token, now, lease=seconds)
        return self._renewed(bool(ok), now, seconds)

    def _due(self) -> bool:
        return self._engine.clock() - self._renewed_at >= self._engine.config.renew_interval

    def heartbeat(self) -> bool:
        """Renew if ``renew_every`` has passed since the last renewal; ``False`` once lost."""
        if self._lost:
            return False
        return self.renew() if self._due() else True

    async def aheartbeat(self) -> bool:
        """:meth:`heartbeat` for async code."""
        if self._lost:
            return False
        return await self.arenew() if self._due() else True


class Idempotency:
    """Runs calls idempotently against ``store``.

    Args:
        store: an :class:`~stormproof.stores.base.IdempotencyStore` (call its ``init()`` once), or
            an :class:`~stormproof.stores.aio.AsyncIdempotencyStore` (``stores.open_async``),
            which serves :meth:`arun` only.
        config: the behaviour (:class:`IdempotencyConfig`).
        clock: wall-clock epoch seconds (default ``time.time``); records are shared between
            processes, so this is not a monotonic clock.
        sleep / async_sleep: how ``"wait"`` waits (defaults: ``time.sleep``/``asyncio.sleep``).
        rng: jitter for the waits.
        store_calls: how :meth:`arun` calls a blocking store: ``"inline"`` on the event loop
            (the default; right for the memory and SQLite stores), or ``"thread"`` through
            ``asyncio.to_thread`` (so one round trip does not hold the loop). An async store is
            always awaited; ``"thread"`` is refused for it.
    """

    def __init__(
        self,
        store: IdempotencyStore | AsyncIdempotencyStore,
        config: IdempotencyConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        store_calls: Literal["inline", "thread"] = "inline",
    ) -> None:
        native = is_async_store(store)
        if not native and not isinstance(store, IdempotencyStore):
            raise ConfigError(
                "store", "must implement IdempotencyStore or AsyncIdempotencyStore", store
            )
        if store_calls not in ("inline", "thread"):
            raise ConfigError("store_calls", 'must be "inline" or "thread"', store_calls)
        if native and store_calls == "thread":
            raise ConfigError(
                "store_calls",
                'must be "inline" for an async store (it is awaited and never blocks the loop)',
                store_calls,
            )
        self.store: IdempotencyStore | AsyncIdempotencyStore = store
        # The blocking store behind run() and renew(); None when ``store`` is async.
        self._sync: IdempotencyStore | None = None if native else cast(IdempotencyStore, store)
        # What arun awaits; None means: call the blocking store on the loop.
        self._async: AsyncIdempotencyStore | None = None
        if native:
            self._async = cast(AsyncIdempotencyStore, store)
        elif store_calls == "thread":
            self._async = ThreadedStore(cast(IdempotencyStore, store))
        # Store calls that must finish although their caller was cancelled: referenced here
        # until done, since the event loop keeps only weak references to tasks.
        self._unfinished: set[asyncio.Future[Any]] = set()
        self.config = config if config is not None else IdempotencyConfig()
        self.clock = clock
        self.sleep = sleep
        self.async_sleep = async_sleep
        self.rng = rng if rng is not None else random.Random()
        self.store_calls = store_calls

    # -- the decisions shared by sync and async ---------------------------------------------

    def _check(self, key: str, digest: str, claim: Claim) -> IdempotencyRecord | None:
        """``None`` if ``claim`` took the key, else the record that holds it."""
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

    def _serialize(self, key: str, result: Any) -> str:
        """The result's JSON, or an :class:`IdempotencyError` (raised after the failure path)."""
        try:
            return self.config.serialize(result)
        except (TypeError, ValueError) as error:
            raise IdempotencyError(
                f"idempotency key {key!r}: the result of type {type(result).__name__} is not "
                "JSON-serialisable, so it was not stored (give IdempotencyConfig.serialize)"
            ) from error

    @staticmethod
    def _warn_fenced(key: str) -> None:
        warnings.warn(
            f"idempotency key {key!r}: the lease expired before the result was stored; "
            "another run may have taken the key over (raise IdempotencyConfig.lease, or renew "
            "it with current_lease().heartbeat())",
            IdempotencyWarning,
            stacklevel=4,
        )

    def _error_detail(self, error: BaseException) -> str | None:
        """The failed record's JSON for ``on_error="keep"``; ``None`` means release."""
        if self.config.on_error == "keep" and isinstance(error, Exception):
            return json.dumps({"error": type(error).__name__, "message": str(error)})
        return None

    def _blocking_store(self, caller: str) -> IdempotencyStore:
        """The blocking store, or a ConfigError naming ``caller`` when the store is async."""
        if self._sync is None:
            raise ConfigError(
                "store",
                f"is an async store, which {caller} cannot use: await arun() / arenew(), or "
                "give a blocking store (stores.open)",
                self.store,
            )
        return self._sync

    def _failed(self, store: IdempotencyStore, key: str, token: str, error: BaseException) -> None:
        detail = self._error_detail(error)
        if detail is not None:
            store.fail(key, token, detail, self.clock(), ttl=self.config.ttl)
        else:
            store.release(key, token)

    # -- sync and async runners -------------------------------------------------------------

    def run(self, key: str, payload: Any, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``fn(*args, **kwargs)`` once for ``key``; duplicates get the stored result."""
        store = self._blocking_store("run()")
        digest = payload_hash(payload)
        token = _new_token()
        config = self.config
        started: float | None = None
        polls = 0
        while True:
            now = self.clock()
            if started is None:
                started = now
            claim = store.claim(key, digest, token, now, lease=config.lease, ttl=config.ttl)
            record = self._check(key, digest, claim)
            if record is None:
                reset = _CURRENT_LEASE.set(IdempotencyLease(self, key, token, now))
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:
                    self._failed(store, key, token, error)
                    raise
                finally:
                    _CURRENT_LEASE.reset(reset)
                try:
                    text = self._serialize(key, result)
                except IdempotencyError as error:
                    # The function ran, but its result cannot be stored: handle it like a
                    # failure (released, or kept as failed per on_error) and say so plainly.
                    self._failed(store, key, token, cast(BaseException, error.__cause__))
                    raise
                if not store.complete(key, token, text, self.clock(), ttl=config.ttl):
                    self._warn_fenced(key)
                return result
            if record.status is RecordStatus.COMPLETED:
                return cast(R, self._stored(record))
            polls += 1
            self.sleep(self._wait_delay(key, record, started, polls))

    def _finish_anyway(self, call: Awaitable[T]) -> asyncio.Future[T]:
        """``call`` as a task that runs to its end even if the awaiting caller is cancelled."""
        task = asyncio.ensure_future(call)
        self._unfinished.add(task)
        task.add_done_callback(self._unfinished.discard)
        return task

    async def _store_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call store ``method`` on the loop, or await it to its end even if cancelled.

        A blocking store with ``store_calls="inline"`` is called on the loop; otherwise the call
        is awaited (in a thread for ``"thread"``) and finishes even if this caller is cancelled.
        """
        if self._async is None:
            return getattr(self._blocking_store("arun()"), method)(*args, **kwargs)
        # shield: a cancelled caller must not interrupt a write half-way (a completion is
        # still stored; a release still frees the key).
        return await asyncio.shield(
            self._finish_anyway(getattr(self._async, method)(*args, **kwargs))
        )

    async def _aclaim(self, key: str, digest: str, token: str, now: float) -> Claim:
        config = self.config
        if self._async is None:
            store = self._blocking_store("arun()")
            return store.claim(key, digest, token, now, lease=config.lease, ttl=config.ttl)
        call = self._async.claim(key, digest, token, now, lease=config.lease, ttl=config.ttl)
        claiming = self._finish_anyway(call)
        try:
            # shield: a cancelled caller must not lose track of a claim the store still makes.
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            claiming.add_done_callback(functools.partial(self._release_orphan, key, token))
            raise

    def _release_orphan(self, key: str, token: str, claiming: asyncio.Future[Claim]) -> None:
        """The caller was cancelled during its claim: give back a key the store took for it."""
        if claiming.cancelled() or claiming.exception() is not None:
            return
        if claiming.result().claimed and self._async is not None:
            self._finish_anyway(self._async.release(key, token))

    async def _afailed(self, key: str, token: str, error: BaseException) -> None:
        detail = self._error_detail(error)
        if detail is not None:
            await self._store_call("fail", key, token, detail, self.clock(), ttl=self.config.ttl)
        else:
            await self._store_call("release", key, token)

    async def arun(
        self, key: str, payload: Any, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any
    ) -> R:
        """The ``async`` form of :meth:`run`.

        Awaits an async store; calls a blocking one as ``store_calls`` says.
        """
        digest = payload_hash(payload)
        token = _new_token()
        started: float | None = None
        polls = 0
        while True:
            now = self.clock()
            if started is None:
                started = now
            record = self._check(key, digest, await self._aclaim(key, digest, token, now))
            if record is None:
                reset = _CURRENT_LEASE.set(IdempotencyLease(self, key, token, now))
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as error:
                    await self._afailed(key, token, error)
                    raise
                finally:
                    _CURRENT_LEASE.reset(reset)
                try:
                    text = self._serialize(key, result)
                except IdempotencyError as error:
                    await self._afailed(key, token, cast(BaseException, error.__cause__))
                    raise
                stored = await self._store_call(
                    "complete", key, token, text, self.clock(), ttl=self.config.ttl
                )
                if not stored:
                    self._warn_fenced(key)
                return result
            if record.status is RecordStatus.COMPLETED:
                return cast(R, self._stored(record))
            polls += 1
            await self.async_sleep(self._wait_delay(key, record, started, polls))


def idempotent(
    store: IdempotencyStore | AsyncIdempotencyStore,
    *,
    key: Callable[..., Any] | None = None,
    payload: Callable[..., Any] | None = None,
    config: IdempotencyConfig | None = None,
    **options: Any,
) -> Callable[[F], F]:
    """Make a sync or async function idempotent.

    Args:
        store: where records live: a blocking store, or an async one (``stores.open_async``)
            for ``async def`` functions only.
        key: computes the idempotency key from the call's arguments (an explicit token such as
            an ``Idempotency-Key`` header, or an order id). Default: the payload hash.
        payload: selects the part of the arguments that identifies the request, checked for key
            reuse (default: all arguments, as ``{"args": [...], "kwargs": {...}}``).
        config: :class:`IdempotencyConfig`.
        **options: passed to :class:`Idempotency` (``clock``, ``sleep``, ``async_sleep``,
            ``rng``, ``store_calls``).

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

        engine._blocking_store(f"the plain function {namespace}")

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            name, body = identify(args, kwargs)
            return engine.run(name, body, fn, *args, **kwargs)

        return cast(F, guarded)

    return decorate
