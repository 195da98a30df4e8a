"""Group commit on the real servers: PostgreSQL's combined statements and Redis's pipelines
answer exactly as single calls would, racing callers still get exactly one winner per key, and
a call that makes the batch fail fails alone.

The reference is :class:`~stormproof.stores.memory.MemoryStore`, the semantics' reference
implementation: the same records are set up in both, a batch of calls goes through the back
end's batch path and one by one through memory, and every answer and every record left behind
must be equal.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_services import store_url

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.stores._calls import ClaimCall, FinishCall
from stormproof.stores.base import Claim, RecordStatus
from stormproof.stores.memory import MemoryStore

T0 = 1_700_000_000.0
BASE = "postgresql://postgres@127.0.0.1:5432/test"

#: How each key's record starts: the calls that make it, at T0 (lease 30 s, TTL 3,600 s unless
#: the state needs a shorter one). Batches then run at T0 + 10 s or later.
STATES = ("absent", "held", "lease_lapsed", "completed", "expired", "failed")


BACKENDS = ["postgresql", "redis"]


@pytest.fixture(scope="module", params=BACKENDS)
def batched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A PostgreSQL or Redis store (one table or prefix for the module), called directly on
    its batch path (``_claim_many``, ``_finish_many``)."""
    url = store_url(str(request.param), tmp_path_factory.mktemp("batched"))
    store: Any = stores.open(url)
    store.init()
    yield store
    store.drop()
    store.close()


def _set_up(store: stores.IdempotencyStore, key: str, state: str) -> None:
    if state == "absent":
        return
    lease = 5.0 if state == "lease_lapsed" else 30.0
    ttl = 5.0 if state == "expired" else 3600.0
    assert store.claim(key, "h0", "t0", T0, lease=lease, ttl=ttl).claimed
    if state in ("completed", "expired"):
        assert store.complete(key, "t0", '"done"', T0, ttl=ttl)
    elif state == "failed":
        assert store.fail(key, "t0", '"boom"', T0, ttl=ttl)


def _twins(pg: Any, states: dict[str, str]) -> tuple[str, MemoryStore]:
    """The same records in the back end (under a fresh key prefix) and in a memory store."""
    prefix = uuid.uuid4().hex[:8] + "-"
    memory = MemoryStore()
    for key, state in states.items():
        _set_up(pg, prefix + key, state)
        _set_up(memory, prefix + key, state)
    return prefix, memory


_KEYS = ("a", "b", "c\x00nul", "%nul%d", "é")
_batch_calls = st.lists(
    st.tuples(
        st.sampled_from(_KEYS),
        st.sampled_from(["h0", "h1"]),
        st.sampled_from([10.0, 10.5, 100.0]),  # seconds after T0
    ),
    min_size=2,
    max_size=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    states=st.fixed_dictionaries({key: st.sampled_from(STATES) for key in _KEYS}),
    calls=_batch_calls,
)
def test_a_combined_claim_answers_as_claims_one_after_another(
    batched: Any, states: dict[str, str], calls: list[tuple[str, str, float]]
) -> None:
    pg = batched
    prefix, memory = _twins(pg, states)
    requests = [
        ClaimCall(prefix + key, payload_hash, f"t{n}", T0 + after, 30.0, 3600.0)
        for n, (key, payload_hash, after) in enumerate(calls)
    ]
    got = pg._claim_many(requests)
    expected = [memory.claim(*r[:4], lease=r.lease, ttl=r.ttl) for r in requests]
    assert got == expected
    for key in _KEYS:
        assert pg.get(prefix + key) == memory.get(prefix + key)


_finish_calls = st.lists(
    st.tuples(
        st.sampled_from(_KEYS),
        st.sampled_from(["t0", "t-other"]),
        st.sampled_from([RecordStatus.COMPLETED, RecordStatus.FAILED]),
    ),
    min_size=2,
    max_size=8,
    unique_by=lambda call: call[0],  # PostgreSQL's group commit never batches a key twice
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    states=st.fixed_dictionaries({key: st.sampled_from(STATES) for key in _KEYS}),
    calls=_finish_calls,
)
def test_a_combined_finish_answers_as_finishes_one_after_another(
    batched: Any, states: dict[str, str], calls: list[tuple[str, str, RecordStatus]]
) -> None:
    pg = batched
    prefix, memory = _twins(pg, states)
    now = T0 + 1.0
    requests = [
        FinishCall(status, prefix + key, token, f'"r{n}\x00"', now, 600.0)
        for n, (key, token, status) in enumerate(calls)
    ]
    got = pg._finish_many(requests)
    finish = {RecordStatus.COMPLETED: memory.complete, RecordStatus.FAILED: memory.fail}
    expected = [finish[r.status](r.key, r.token, r.result, r.now, ttl=r.ttl) for r in requests]
    assert got == expected
    for key in _KEYS:
        assert pg.get(prefix + key) == memory.get(prefix + key)


# -- PostgreSQL: what only a combined statement can do -------------------------------------------


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    url = store_url("postgresql", tmp_path_factory.mktemp("pg"))
    store: Any = stores.open(url)
    store.init()
    yield store
    store.drop()
    store.close()


def test_an_item_that_breaks_the_combined_statement_fails_alone(pg: Any) -> None:
    psycopg = pytest.importorskip("psycopg")
    prefix = uuid.uuid4().hex[:8] + "-"
    # Too big for a btree index entry: PostgreSQL refuses the row (SQLSTATE 54000).
    rng = random.Random(7)
    huge = prefix + "".join(rng.choice("0123456789abcdef") for _ in range(12_000))
    requests = [
        ClaimCall(key, "h", "t", T0, 30.0, 3600.0)
        for key in (prefix + "ok-1", huge, prefix + "ok-2")
    ]
    first, broken, last = pg._claim_many(requests)
    assert isinstance(first, Claim) and first.claimed
    assert isinstance(last, Claim) and last.claimed
    assert isinstance(broken, psycopg.errors.ProgramLimitExceeded)
    assert pg.get(huge) is None and pg.get(prefix + "ok-2") is not None
    finishes = [
        FinishCall(RecordStatus.COMPLETED, key, "t", result, T0, 3600.0)
        for key, result in ((prefix + "ok-1", '"fine"'), (prefix + "ok-2", '"fine"'))
    ]
    assert pg._finish_many(finishes) == [True, True]


def test_which_errors_are_retried_call_by_call() -> None:
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from stormproof.stores.postgres import _retry_alone

    assert _retry_alone(psycopg.errors.DeadlockDetected())
    assert _retry_alone(psycopg.errors.ProgramLimitExceeded())
    assert not _retry_alone(psycopg.errors.AdminShutdown())
    assert not _retry_alone(psycopg.errors.ConnectionFailure())
    assert not _retry_alone(psycopg.OperationalError("connection lost"))


def test_group_commit_parameter() -> None:
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from stormproof.stores.postgres import PostgresStore, parse_url

    assert parse_url(BASE).group_commit == 2
    assert parse_url(f"{BASE}?group_commit=0").group_commit == 0
    assert parse_url(f"{BASE}?group_commit=5&table=t").conninfo == BASE
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(ConfigError, match="group_commit"):
            parse_url(f"{BASE}?group_commit={bad}")
    assert PostgresStore(f"{BASE}?group_commit=0")._claims is None


# -- racing callers ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("group_commit", [1, 3])
def test_racing_threads_get_one_winner_per_key(
    tmp_path: Path, backend: str, group_commit: int
) -> None:
    url = f"{store_url(backend, tmp_path)}&group_commit={group_commit}"
    if backend == "postgresql":
        url += "&pool_max=8"
    store: Any = stores.open(url)
    store.init()
    keys = [f"k{n}" for n in range(40)]
    answers: dict[str, list[tuple[str, Claim]]] = {key: [] for key in keys}
    record = threading.Lock()
    start = threading.Barrier(16)

    def worker(me: int) -> None:
        mine = keys[:]
        random.Random(me).shuffle(mine)
        start.wait()
        for key in mine:
            claim = store.claim(key, "h", f"w{me}", T0, lease=60.0, ttl=3600.0)
            with record:
                answers[key].append((f"w{me}", claim))
            if claim.claimed:
                assert store.complete(key, f"w{me}", f'"{me}"', T0 + 1, ttl=3600.0)

    try:
        threads = [threading.Thread(target=worker, args=(me,)) for me in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for key in keys:
            winners = [token for token, claim in answers[key] if claim.claimed]
            assert len(winners) == 1, (key, winners)
            assert len(answers[key]) == 16
            for _token, claim in answers[key]:
                assert claim.record.token == winners[0]
            final = store.get(key)
            assert final is not None and final.status is RecordStatus.COMPLETED
            assert final.result == f'"{winners[0][1:]}"'
    finally:
        store.drop()
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_tasks_get_one_winner_per_key_and_share_statements(
    tmp_path: Path, backend: str
) -> None:
    url = f"{store_url(backend, tmp_path)}&group_commit=1"
    keys = [f"k{n}" for n in range(30)]

    async def scenario() -> tuple[list[list[Claim]], list[int]]:
        store = stores.open_async(url)
        await store.init()
        sizes: list[int] = []
        many = store._claim_many  # type: ignore[attr-defined]

        async def counting(requests: Sequence[ClaimCall]) -> object:
            sizes.append(len(requests))
            return await many(requests)

        store._claims._run_many = counting  # type: ignore[attr-defined]

        async def worker(me: int) -> list[Claim]:
            mine = keys[:]
            random.Random(me).shuffle(mine)
            got = []
            for key in mine:
                claim = await store.claim(key, "h", f"w{me}", T0, lease=60.0, ttl=3600.0)
                got.append(claim)
                if claim.claimed:
                    assert await store.complete(key, f"w{me}", "1", T0 + 1, ttl=3600.0)
            return got

        try:
            return await asyncio.gather(*(worker(me) for me in range(24))), sizes
        finally:
            await store.drop()  # type: ignore[attr-defined]
            await store.close()

    per_worker, sizes = asyncio.run(scenario())
    claims = [claim for got in per_worker for claim in got]
    by_key: dict[str, list[Claim]] = {}
    for claim in claims:
        by_key.setdefault(claim.record.key, []).append(claim)
    assert sorted(by_key) == sorted(keys)
    for key, got in by_key.items():
        winners = {claim.record.token for claim in got if claim.claimed}
        assert len(winners) == 1, key
        assert {claim.record.token for claim in got} == winners
    assert sizes and max(sizes) > 1, "24 racing tasks never shared a claim statement"


# -- Redis: what only a pipeline can do ------------------------------------------------------------


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[Any]:
    store: Any = stores.open(store_url("redis", tmp_path))
    store.init()
    yield store
    store.drop()
    store.close()


def test_a_pipeline_after_a_script_flush_sends_its_calls_again_one_by_one(
    redis_store: Any,
) -> None:
    redis_store._client.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    calls = [ClaimCall(key, "h", f"t{n}", T0, 30.0, 3600.0) for n, key in enumerate("aab")]
    first, repeat, other = redis_store._claim_many(calls)
    assert first.claimed and other.claimed
    assert not repeat.claimed and repeat.record.token == "t0"  # in order: a, then a again
    redis_store._client.script_flush()
    done = redis_store._finish_many(
        [
            FinishCall(RecordStatus.COMPLETED, key, token, "1", T0, 3600.0)
            for key, token in (("a", "t0"), ("b", "wrong"))
        ]
    )
    assert done == [True, False]


def test_a_call_with_invalid_arguments_fails_alone_in_a_pipeline(redis_store: Any) -> None:
    calls = [
        ClaimCall("a", "h", "t", T0, 30.0, 3600.0),
        ClaimCall("b", "h", "t", float("nan"), 30.0, 3600.0),
        ClaimCall("c", "h", "t", T0, 30.0, 3600.0),
    ]
    first, broken, last = redis_store._claim_many(calls)
    assert first.claimed and last.claimed
    assert isinstance(broken, ConfigError) and broken.field == "now"
    assert redis_store.get("b") is None


def test_redis_group_commit_parameter() -> None:
    pytest.importorskip("redis", reason="the redis extra is not installed")
    from stormproof.stores.redis import RedisStore, _parse_url

    base = "redis://127.0.0.1:6379/15"
    assert _parse_url(base).group_commit == 2
    parsed = _parse_url(f"{base}?group_commit=0&prefix=p:")
    assert (parsed.group_commit, parsed.prefix, parsed.client_url) == (0, "p:", base)
    for bad in ("-1", "x"):
        with pytest.raises(ConfigError, match="group_commit"):
            _parse_url(f"{base}?group_commit={bad}")
    with pytest.raises(ConfigError, match="group_commit"):
        _parse_url(f"{base}?group_commit=1&group_commit=2")
    assert RedisStore(f"{base}?group_commit=0")._claims is None
