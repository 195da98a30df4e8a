"""A Redis store (redis-py): one hash per record, every state change one atomic Lua script.

    store = stormproof.stores.open("redis://localhost:6379/0?prefix=billing:idem:")

**URL.** Any ``redis://``, ``rediss://`` or ``unix://`` URL that :meth:`redis.Redis.from_url`
accepts, plus two query parameters of stormproof's own, removed before the URL reaches
redis-py:

* ``prefix`` -- the namespace of this store's keys (default ``stormproof:idem:``), so several
  applications or test runs can share one database;
* ``ttl_margin`` -- seconds a record is kept by Redis past its ``expires_at`` (default 300; see
  *Expiry* below);
* ``group_commit`` -- how many claim (and, separately, result) round trips a store makes at
  once before further concurrent calls share the next one (default 2; ``0`` turns it off):
  see *Pipelining*.

Invalid values raise :class:`~stormproof.errors.ConfigError` naming the field (``prefix``,
``port``, ``db``, ``socket_timeout``, an unknown option's name, ...).

**Layout.** The record of ``key`` is the hash ``{prefix}rec:{key}`` with the fields ``status``,
``payload_hash``, ``token``, ``expires_at``, ``lease_expires_at`` and (completed or failed)
``result``; ``{prefix}__schema__`` holds the schema version written by :meth:`RedisStore.init`.
Records live under ``rec:`` so that no idempotency key -- keys are arbitrary text -- can name the
schema key. Times are stored as ``repr(float)`` text, which parses back to the same float.

**Atomicity.** ``claim``, ``complete``, ``fail``, ``release`` and ``extend`` each run as one Lua
script (``EVALSHA``), so the check and the change cannot interleave with another client's. The
scripts compare the ``now`` passed by the caller with the stored times; Redis's own clock is never
used for the semantics.

**Expiry.** Whether a record has expired is decided only by its stored ``expires_at`` against the
caller's ``now``, exactly as in every other back end. In addition each record carries a Redis TTL
so that Redis eventually deletes expired records by itself: a *relative* ``PEXPIRE`` of
``(expires_at - now) + ttl_margin`` (the requested TTL plus the margin), measured by the Redis
server from the moment of the write. It is deliberately not a ``PEXPIREAT`` to ``expires_at``:
callers may pass any epoch times (tests pass 2023 dates), and an absolute time in the past makes
Redis delete the key at once. The margin absorbs clock skew between the processes sharing the
store: a record is never removed by Redis while a caller whose clock lags by less than
``ttl_margin`` could still see it as live. Once Redis has removed an expired record, ``get``
returns ``None`` for it instead of the expired record; a ``claim`` behaves the same either way.

**Pipelining.** Concurrent callers of one store (threads, or tasks of the async store) share
round trips, as on PostgreSQL (:mod:`stormproof.stores._group_commit`): a caller that finds a
free slot sends its script alone; callers that find every slot busy queue, and the next free
slot sends all of their scripts in one pipeline (``MULTI``-less: each script stays its own
atomic step, run in the order the callers queued, so each gets the answer it would have got
alone). A script Redis no longer knows (``NOSCRIPT`` after a restart or ``SCRIPT FLUSH``) is
loaded and the calls are sent again one by one.

**Durability.** Redis acknowledges a write once it is in memory. Whether it survives a crash or
restart of the Redis server depends entirely on the server's persistence configuration (RDB
snapshots lose the writes since the last snapshot; AOF with ``appendfsync everysec`` up to about
a second; only ``appendfsync always`` makes every acknowledged write durable), and with
asynchronous replication a fail-over can lose acknowledged writes too. Use ``RedisStore`` for
idempotency windows where losing records on a Redis crash is acceptable (a lost record lets a
duplicate run once more), or run Redis with AOF ``appendfsync always``; otherwise prefer the
SQLite or PostgreSQL stores. (The test server of this project keeps nothing on disk.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.stores._calls import ClaimCall, FinishCall
from stormproof.stores._group_commit import GroupCommit, Outcome
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TTL_MARGIN", "RedisStore"]

#: The key prefix when the URL names none.
DEFAULT_PREFIX = "stormproof:idem:"
#: Seconds Redis keeps a record past its ``expires_at`` (see *Expiry* in the module docstring).
DEFAULT_TTL_MARGIN = 300.0
#: Round trips of each kind a store makes at once before concurrent calls share pipelines.
DEFAULT_GROUP_COMMIT = 2
#: The most scripts one pipeline carries.
GROUP_COMMIT_MAX_BATCH = 256

_SCHEMES = ("redis", "rediss", "unix")
#: Query parameters of stormproof's own, removed before the URL reaches redis-py.
_OWN_PARAMS = ("prefix", "ttl_margin", "group_commit")
# Query parameters the store relies on; a URL may not change them.
_RESERVED = ("decode_responses", "encoding", "encoding_errors")
# Redis TTLs longer than this (about 100 years) are not set at all: the record then stays until
# deleted, which is what such a TTL means in practice, and Redis rejects absurdly large ones.
_MAX_REDIS_TTL_MS = 100 * 366 * 24 * 3600 * 1000
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")
_UNLINK_BATCH = 500

_FIELDS = ("status", "payload_hash", "token", "expires_at", "lease_expires_at", "result")

# KEYS[1] record; ARGV now, payload_hash, token, expires_at, lease_expires_at, redis_ttl_ms.
# Returns {1} when claimed, else {0, <the stored fields in _FIELDS order>}.
_CLAIM = """
local f = redis.call('HMGET', KEYS[1], 'status', 'payload_hash', 'token',
                     'expires_at', 'lease_expires_at', 'result')
local status = f[1]
if status then
  local now = tonumber(ARGV[1])
  local claimable = now >= tonumber(f[4]) or status == 'failed'
    or (status == 'in_progress' and now >= tonumber(f[5]))
  if not claimable then
    return {0, f[1], f[2], f[3], f[4], f[5], f[6]}
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'payload_hash', ARGV[2], 'token', ARGV[3],
           'expires_at', ARGV[4], 'lease_expires_at', ARGV[5])
if tonumber(ARGV[6]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
return {1}
"""

# KEYS[1] record; ARGV token, new status, expires_at, lease_expires_at, result, redis_ttl_ms.
# complete and fail: only the holder of an in-progress claim may finish it. Returns 1 or 0.
_FINISH = """
local f = redis.call('HMGET', KEYS[1], 'token', 'status')
if f[1] ~= ARGV[1] or f[2] ~= 'in_progress' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'expires_at', ARGV[3],
           'lease_expires_at', ARGV[4], 'result', ARGV[5])
if tonumber(ARGV[6]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
else
  redis.call('PERSIST', KEYS[1])
end
return 1
"""

# KEYS[1] record; ARGV token. Deletes the record if the token holds an in-progress claim.
_RELEASE = """
local f = redis.call('HMGET', KEYS[1], 'token', 'status')
if f[1] ~= ARGV[1] or f[2] ~= 'in_progress' then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] record; ARGV token, lease_expires_at, redis_ttl_ms (of a record expiring then).
# Renews the holder's lease; moves expires_at (and the Redis TTL) to the lease's end when the
# lease would otherwise outlive the record. Returns 1 or 0.
_EXTEND = """
local f = redis.call('HMGET', KEYS[1], 'token', 'status', 'expires_at')
if f[1] ~= ARGV[1] or f[2] ~= 'in_progress' then
  return 0
end
if tonumber(ARGV[2]) > tonumber(f[3]) then
  redis.call('HSET', KEYS[1], 'lease_expires_at', ARGV[2], 'expires_at', ARGV[2])
  if tonumber(ARGV[3]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  else
    redis.call('PERSIST', KEYS[1])
  end
else
  redis.call('HSET', KEYS[1], 'lease_expires_at', ARGV[2])
end
return 1
"""

# KEYS[1] schema key; ARGV version. Records the version unless a newer one is there already.
_INIT = """
local current = tonumber(redis.call('GET', KEYS[1]))
if not current or current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""


def _quoted_name(message: str) -> str | None:
    match = re.search(r"'([^']+)'", message)
    return match.group(1) if match else None


class _RedisURL(NamedTuple):
    prefix: str
    ttl_margin: float
    group_commit: int
    client_url: str


def _parse_url(url: str) -> _RedisURL:
    """Split ``url`` into stormproof's settings and the URL for redis-py; ConfigError if bad."""
    if not isinstance(url, str):
        raise ConfigError("url", "must be a string", url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when it is not a valid port number
    except ValueError as exc:
        field = "port" if "port" in str(exc).lower() else "url"
        raise ConfigError(field, str(exc), url) from exc
    if parts.scheme not in _SCHEMES:
        raise ConfigError("url", f"scheme must be one of {', '.join(_SCHEMES)}", url)
    del port
    own: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OWN_PARAMS:
            if name in own:
                raise ConfigError(name, "given more than once", url)
            own[name] = value
        elif name in _RESERVED:
            raise ConfigError(name, "is set by RedisStore and may not be given in the URL", value)
        else:
            rest.append((name, value))
    prefix = own.get("prefix", DEFAULT_PREFIX)
    if not prefix:
        raise ConfigError("prefix", "must not be empty", prefix)
    ttl_margin = DEFAULT_TTL_MARGIN
    if "ttl_margin" in own:
        try:
            ttl_margin = float(own["ttl_margin"])
        except ValueError as exc:
            raise ConfigError(
                "ttl_margin", "must be a number of seconds", own["ttl_margin"]
            ) from exc
        finite_above("ttl_margin", ttl_margin, 0.0)
    if parts.scheme != "unix" and not re.fullmatch(r"/?(\d+)?", parts.path):
        # redis-py silently falls back to database 0 when the path is not a number.
        raise ConfigError("db", "the URL path must be a database number", parts.path)
    group_commit = DEFAULT_GROUP_COMMIT
    if "group_commit" in own:
        try:
            group_commit = int(own["group_commit"])
        except ValueError as exc:
            raise ConfigError("group_commit", "must be an integer", own["group_commit"]) from exc
        int_at_least("group_commit", group_commit, 0)
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return _RedisURL(prefix, ttl_margin, group_commit, client_url)


def _number(field: str, value: float) -> None:
    finite_at_least(field, value, -math.inf)


class _RedisRecords:
    """What the sync and async Redis stores share: keys, Redis TTLs, script arguments, replies.

    Subclasses set ``url``, ``prefix`` and ``ttl_margin``.
    """

    url: str
    prefix: str
    ttl_margin: float

    def record_key(self, key: str) -> str:
        """The Redis key of the hash holding the record of ``key``."""
        return f"{self.prefix}rec:{key}"

    @property
    def _schema_key(self) -> str:
        return self.prefix + "__schema__"

    def _scan_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every key under the prefix, glob characters escaped."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "*"

    def _redis_ttl_ms(self, expires_at: float, now: float) -> int:
        """The Redis TTL of a record, relative to the write; 0 means none (too long to set)."""
        remaining = max(expires_at - now, 0.0) + self.ttl_margin
        milliseconds = math.ceil(remaining * 1000.0)
        return milliseconds if milliseconds <= _MAX_REDIS_TTL_MS else 0

    def _claim_args(
        self, payload_hash: str, token: str, now: float, lease: float, ttl: float
    ) -> list[Any]:
        """``ARGV`` of the claim script."""
        _number("now", now)
        _number("lease", lease)
        _number("ttl", ttl)
        expires_at = now + ttl
        return [
            repr(now),
            payload_hash,
            token,
            repr(expires_at),
            repr(now + lease),
            self._redis_ttl_ms(expires_at, now),
        ]

    def _claim_answer(
        self,
        key: str,
        payload_hash: str,
        token: str,
        now: float,
        lease: float,
        ttl: float,
        reply: Any,
    ) -> Claim:
        """The ``Claim`` the claim script's reply stands for."""
        answer = cast("list[Any]", reply)
        if int(answer[0]) == 1:
            record = IdempotencyRecord(
                key, RecordStatus.IN_PROGRESS, payload_hash, token, now + ttl, now + lease
            )
            return Claim(True, record)
        stored = cast("list[str | None]", answer[1:])
        return Claim(False, self._record(key, dict(zip(_FIELDS, stored, strict=True))))

    def _finish_args(
        self, status: RecordStatus, token: str, result: str, now: float, ttl: float
    ) -> list[Any]:
        """``ARGV`` of the finish script (complete and fail)."""
        _number("now", now)
        _number("ttl", ttl)
        expires_at = now + ttl
        return [
            token,
            status.value,
            repr(expires_at),
            repr(now),
            result,
            self._redis_ttl_ms(expires_at, now),
        ]

    def _claim_command(self, call: ClaimCall) -> list[Any]:
        """``KEYS`` count, key and ``ARGV`` of the claim script for ``call`` (for EVALSHA)."""
        args = self._claim_args(call.payload_hash, call.token, call.now, call.lease, call.ttl)
        return [1, self.record_key(call.key), *args]

    def _claim_reply(self, call: ClaimCall, reply: Any) -> Claim:
        return self._claim_answer(
            call.key, call.payload_hash, call.token, call.now, call.lease, call.ttl, reply
        )

    def _finish_command(self, call: FinishCall) -> list[Any]:
        """``KEYS`` count, key and ``ARGV`` of the finish script for ``call``."""
        args = self._finish_args(call.status, call.token, call.result, call.now, call.ttl)
        return [1, self.record_key(call.key), *args]

    def _extend_args(self, token: str, now: float, lease: float) -> list[Any]:
        """``ARGV`` of the extend script."""
        _number("now", now)
        _number("lease", lease)
        until = now + lease
        return [token, repr(until), self._redis_ttl_ms(until, now)]

    @staticmethod
    def _record(key: str, fields: Mapping[str, str | None]) -> IdempotencyRecord:
        def text(name: str) -> str:
            value = fields.get(name)
            if value is None:
                raise ValueError(f"the Redis record of {key!r} has no {name!r} field")
            return value

        return IdempotencyRecord(
            key=key,
            status=RecordStatus(text("status")),
            payload_hash=text("payload_hash"),
            token=text("token"),
            expires_at=float(text("expires_at")),
            lease_expires_at=float(text("lease_expires_at")),
            result=fields.get("result"),
        )


def _client_from_url(url: str, client_url: str, factory: Callable[..., Any]) -> Any:
    """A redis-py client (sync or asyncio) for ``client_url``; bad options raise ConfigError.

    redis-py passes unknown query parameters on to the connection class, which raises
    ``TypeError`` only when the first connection is made; building one (no I/O) finds them now.
    """
    try:
        client = factory(client_url, decode_responses=True)
    except ValueError as exc:  # redis-py: "Invalid value for 'socket_timeout' in ..."
        raise ConfigError(_quoted_name(str(exc)) or "url", str(exc), url) from exc
    pool = client.connection_pool
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        name = _quoted_name(str(exc))
        raise ConfigError(name or "url", "is not a redis-py connection option", url) from exc
    return client


_CallT = TypeVar("_CallT", ClaimCall, FinishCall)
_AnswerT = TypeVar("_AnswerT")


class _Pipelined(NamedTuple):
    """A batch of calls made ready for one pipeline: the commands, and the calls' positions."""

    positions: list[int]
    commands: list[list[Any]]
    #: One per call: its outcome once known (an invalid call's error at once), else ``None``.
    outcomes: list[Outcome[Any] | None]


def _pipelined(calls: Sequence[_CallT], command: Callable[[_CallT], list[Any]]) -> _Pipelined:
    """Each call's EVALSHA arguments; a call whose arguments are invalid fails alone."""
    batch = _Pipelined([], [], [None] * len(calls))
    for position, call in enumerate(calls):
        try:
            batch.commands.append(command(call))
        except Exception as error:  # the caller of that call raises it
            batch.outcomes[position] = error
            continue
        batch.positions.append(position)
    return batch


def _settle_replies(
    batch: _Pipelined,
    calls: Sequence[_CallT],
    replies: Sequence[Any],
    answer: Callable[[_CallT, Any], _AnswerT],
) -> list[int]:
    """Fill in each call's outcome from its reply; the positions Redis answered NOSCRIPT."""
    unknown_script: list[int] = []
    for position, reply in zip(batch.positions, replies, strict=True):
        if isinstance(reply, redis.exceptions.NoScriptError):
            unknown_script.append(position)
        elif isinstance(reply, Exception):
            batch.outcomes[position] = reply
        else:
            try:
                batch.outcomes[position] = answer(calls[position], reply)
            except Exception as error:  # a reply this code cannot read: that caller's error
                batch.outcomes[position] = error
    return unknown_script


def _outcomes(batch: _Pipelined) -> list[Outcome[Any]]:
    settled = [outcome for outcome in batch.outcomes if outcome is not None]
    if len(settled) != len(batch.outcomes):
        raise RuntimeError("a pipelined call was left without an answer")
    return settled


def _done(reply: Any) -> bool:
    """Whether a finish, release or extend script changed the record (it replies 1)."""
    return int(cast("int", reply)) == 1


def _finish_reply(_call: FinishCall, reply: Any) -> bool:
    return _done(reply)


class RedisStore(_RedisRecords):
    """Idempotency records in Redis. See the module docstring for the URL, layout and durability.

    Safe to share between threads (redis-py pools connections) and, through the server, between
    processes and machines.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        config = _parse_url(url)
        self.prefix, self.ttl_margin = config.prefix, config.ttl_margin
        client: redis.Redis = _client_from_url(url, config.client_url, redis.Redis.from_url)
        self._client = client
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._init = client.register_script(_INIT)
        self._claims: GroupCommit[ClaimCall, Claim] | None = None
        self._finishes: GroupCommit[FinishCall, bool] | None = None
        if config.group_commit:
            limits = {"max_inflight": config.group_commit, "max_batch": GROUP_COMMIT_MAX_BATCH}
            # No key: a pipeline runs the scripts one after another, repeats included.
            self._claims = GroupCommit(self._claim_one, self._claim_many, None, **limits)
            self._finishes = GroupCommit(self._finish_one, self._finish_many, None, **limits)

    def init(self) -> None:
        """Record ``SCHEMA_VERSION`` (idempotent; Redis has no schema to create)."""
        self._init(keys=[self._schema_key], args=[SCHEMA_VERSION])

    def schema_version(self) -> int | None:
        """The version recorded by :meth:`init`, or ``None`` before it."""
        value = cast("str | None", self._client.get(self._schema_key))
        return None if value is None else int(value)

    def claim(
        self,
        key: str,
        payload_hash: str,
        token: str,
        now: float,
        *,
        lease: float,
        ttl: float,
    ) -> Claim:
        """Take ``key`` if it is free, expired, failed or its lease ran out (one Lua script)."""
        call = ClaimCall(key, payload_hash, token, now, lease, ttl)
        return self._claim_one(call) if self._claims is None else self._claims.submit(call)

    def _claim_one(self, call: ClaimCall) -> Claim:
        command = self._claim_command(call)
        return self._claim_reply(call, self._claim(keys=command[1:2], args=command[2:]))

    def _claim_many(self, calls: Sequence[ClaimCall]) -> list[Outcome[Claim]]:
        return self._pipeline(
            self._claim.sha, calls, self._claim_command, self._claim_reply, self._claim_one
        )

    def _finish_with(
        self, status: RecordStatus, key: str, token: str, result: str, now: float, ttl: float
    ) -> bool:
        call = FinishCall(status, key, token, result, now, ttl)
        return self._finish_one(call) if self._finishes is None else self._finishes.submit(call)

    def _finish_one(self, call: FinishCall) -> bool:
        command = self._finish_command(call)
        return _finish_reply(call, self._finish(keys=command[1:2], args=command[2:]))

    def _finish_many(self, calls: Sequence[FinishCall]) -> list[Outcome[bool]]:
        return self._pipeline(
            self._finish.sha, calls, self._finish_command, _finish_reply, self._finish_one
        )

    def _pipeline(
        self,
        sha: str,
        calls: Sequence[_CallT],
        command: Callable[[_CallT], list[Any]],
        answer: Callable[[_CallT, Any], _AnswerT],
        run_one: Callable[[_CallT], _AnswerT],
    ) -> list[Outcome[Any]]:
        """Send the calls' scripts in one pipeline.

        Calls Redis answered NOSCRIPT go again alone through ``run_one`` (the script object,
        which loads the script again).
        """
        batch = _pipelined(calls, command)
        pipe = self._client.pipeline(transaction=False)
        for args in batch.commands:
            pipe.evalsha(sha, *args)
        replies = pipe.execute(raise_on_error=False) if batch.commands else []
        for position in _settle_replies(batch, calls, replies, answer):
            try:
                batch.outcomes[position] = run_one(calls[position])
            except Exception as error:  # that caller's error
                batch.outcomes[position] = error
        return _outcomes(batch)

    def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        return self._finish_with(RecordStatus.COMPLETED, key, token, result, now, ttl)

    def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds the claim."""
        done = self._release(keys=[self.record_key(key)], args=[token])
        return _done(done)

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim (one Lua script)."""
        args = self._extend_args(token, now, lease)
        return _done(self._extend(keys=[self.record_key(key)], args=args))

    def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return self._finish_with(RecordStatus.FAILED, key, token, error, now, ttl)

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not (until Redis removes it), or ``None``."""
        fields = cast("dict[str, str]", self._client.hgetall(self.record_key(key)))
        if not fields:
            return None
        return self._record(key, fields)

    def drop(self) -> None:
        """Delete every key under this store's prefix (SCAN + UNLINK). For tests and clean-up."""
        batch: list[str] = []
        pattern = self._scan_pattern()
        for name in cast("Iterator[str]", self._client.scan_iter(match=pattern, count=1000)):
            batch.append(name)
            if len(batch) >= _UNLINK_BATCH:
                self._client.unlink(*batch)
                batch.clear()
        if batch:
            self._client.unlink(*batch)

    def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Nothing to do: Redis expires keys itself (PEXPIREAT); returns 0."""
        int_at_least("limit", limit, 1)
        return 0

    def close(self) -> None:
        """Close the client and its connection pool."""
        self._client.close()
