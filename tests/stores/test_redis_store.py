"""Redis specifics beyond the conformance suite: URL parsing, prefixes, TTLs, a process race."""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from store_services import REDIS, require_service, store_url

from stormproof import stores
from stormproof.errors import ConfigError

pytest.importorskip("redis", reason="the redis extra is not installed")

from stormproof.stores.redis import DEFAULT_PREFIX, DEFAULT_TTL_MARGIN, RedisStore
from stormproof.stores.redis_async import AsyncRedisStore

T0 = 1_700_000_000.0
LEASE = 30.0
TTL = 3600.0


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[RedisStore]:
    opened = RedisStore(store_url("redis", tmp_path))
    opened.init()
    try:
        yield opened
    finally:
        opened.drop()
        opened.close()


# -- URL parsing (no server needed: redis-py connects lazily) ------------------------------------


def test_prefix_is_stripped_and_the_rest_goes_to_redis_py() -> None:
    store = RedisStore("redis://127.0.0.1:6390/3?prefix=app:idem:&socket_timeout=2.5&ttl_margin=60")
    try:
        assert store.prefix == "app:idem:"
        assert store.ttl_margin == 60.0
        kwargs = store._client.connection_pool.connection_kwargs
        assert "prefix" not in kwargs and "ttl_margin" not in kwargs
        assert kwargs["port"] == 6390 and kwargs["db"] == 3 and kwargs["socket_timeout"] == 2.5
        assert store.record_key("k") == "app:idem:rec:k"
    finally:
        store.close()


def test_default_prefix_and_margin() -> None:
    store = stores.open("redis://127.0.0.1:6379/0")
    assert isinstance(store, RedisStore)
    try:
        assert store.prefix == DEFAULT_PREFIX == "stormproof:idem:"
        assert store.ttl_margin == DEFAULT_TTL_MARGIN
        assert store.url == "redis://127.0.0.1:6379/0"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("redis://127.0.0.1:6379/0?prefix=", "prefix"),
        ("redis://127.0.0.1:6379/0?prefix=a&prefix=b", "prefix"),
        ("redis://127.0.0.1:6379/0?ttl_margin=soon", "ttl_margin"),
        ("redis://127.0.0.1:6379/0?ttl_margin=0", "ttl_margin"),
        ("redis://127.0.0.1:6379/0?ttl_margin=inf", "ttl_margin"),
        ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
        ("redis://127.0.0.1:6379/0?db=zero", "db"),
        ("redis://127.0.0.1:6379/zero", "db"),
        ("redis://127.0.0.1:99999/0", "port"),
        ("redis://127.0.0.1:6379/0?no_such_option=1", "no_such_option"),
        ("redis://127.0.0.1:6379/0?decode_responses=false", "decode_responses"),
        ("http://127.0.0.1:6379/0", "url"),
    ],
)
@pytest.mark.parametrize("store_class", [RedisStore, AsyncRedisStore])
def test_bad_values_raise_config_error_naming_the_field(
    url: str, field: str, store_class: type[RedisStore | AsyncRedisStore]
) -> None:
    with pytest.raises(ConfigError) as caught:
        store_class(url)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


# -- Against the server --------------------------------------------------------------------------


def test_keys_of_two_prefixes_do_not_collide(tmp_path: Path) -> None:
    first = RedisStore(store_url("redis", tmp_path))
    second = RedisStore(store_url("redis", tmp_path))
    try:
        assert first.prefix != second.prefix
        assert first.claim("same", "h1", "tok-1", T0, lease=LEASE, ttl=TTL).claimed
        assert second.claim("same", "h2", "tok-2", T0, lease=LEASE, ttl=TTL).claimed
        first_record, second_record = first.get("same"), second.get("same")
        assert first_record is not None and first_record.token == "tok-1"
        assert second_record is not None and second_record.token == "tok-2"
        first.init()
        assert first.schema_version() == 1 and second.schema_version() is None
        first.drop()
        assert first.get("same") is None and first.schema_version() is None
        assert second.get("same") is not None
    finally:
        for store in (first, second):
            store.drop()
            store.close()


def test_an_idempotency_key_cannot_clash_with_the_schema_key(redis_store: RedisStore) -> None:
    assert redis_store.claim("__schema__", "h", "t", T0, lease=LEASE, ttl=TTL).claimed
    assert redis_store.schema_version() == 1


def test_records_carry_a_redis_ttl_of_the_requested_ttl_plus_the_margin(
    redis_store: RedisStore,
) -> None:
    # T0 lies in the past: the Redis TTL is relative to the write, so the record is not deleted.
    client = redis_store._client
    name = redis_store.record_key("k")
    redis_store.claim("k", "h", "tok", T0, lease=LEASE, ttl=TTL)
    margin_ms = redis_store.ttl_margin * 1000
    assert TTL * 1000 + margin_ms - 5_000 < client.pttl(name) <= TTL * 1000 + margin_ms
    assert redis_store.complete("k", "tok", '"done"', T0 + 1, ttl=10.0)
    assert 10_000 + margin_ms - 5_000 < client.pttl(name) <= 10_000 + margin_ms
    record = redis_store.get("k")
    assert record is not None and record.expires_at == T0 + 1 + 10.0


def test_an_expired_record_keeps_its_redis_ttl_short_but_positive(redis_store: RedisStore) -> None:
    # A TTL already over (ttl <= 0) still leaves the key for the margin, never deletes it at once.
    redis_store.claim("k", "h", "tok", T0, lease=LEASE, ttl=-5.0)
    assert (
        0 < redis_store._client.pttl(redis_store.record_key("k")) <= redis_store.ttl_margin * 1000
    )
    again = redis_store.claim("k", "h", "tok-2", T0, lease=LEASE, ttl=TTL)
    assert again.claimed


def test_unicode_keys_results_and_exact_floats_round_trip(redis_store: RedisStore) -> None:
    now = 1_700_000_000.123456789
    key = "ключ-🔑-\x00-*?[]"
    assert redis_store.claim(key, "h", "tok", now, lease=0.1, ttl=1 / 3).claimed
    record = redis_store.get(key)
    assert record is not None
    assert record.expires_at == now + 1 / 3 and record.lease_expires_at == now + 0.1
    assert redis_store.complete(key, "tok", "", now, ttl=TTL)
    record = redis_store.get(key)
    assert record is not None and record.result == ""


# -- A race between processes --------------------------------------------------------------------

WORKERS = 8
KEYS = 200


def _claim_all(url: str, token: str, barrier: Barrier, results: Any) -> None:
    store = RedisStore(url)
    try:
        # Connect and load the script before the start, and claim in an order of its own, so
        # the processes really contend instead of the first one taking every key.
        store.claim(f"warm-up-{token}", "h", token, time.time(), lease=LEASE, ttl=TTL)
        order = list(range(KEYS))
        random.Random(token).shuffle(order)
        barrier.wait(timeout=30)
        won = []
        for i in order:
            if store.claim(f"key-{i}", "h", token, time.time(), lease=LEASE, ttl=TTL).claimed:
                won.append(i)
        results.put((token, won))
    finally:
        store.close()


def test_exactly_one_process_wins_each_key(tmp_path: Path) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    url = f"{REDIS}?prefix=sp-test-race-{uuid.uuid4().hex[:12]}:"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    tokens = [f"worker-{n}" for n in range(WORKERS)]
    processes = [
        context.Process(target=_claim_all, args=(url, token, barrier, results)) for token in tokens
    ]
    checker = RedisStore(url)
    try:
        for process in processes:
            process.start()
        outcomes = dict(results.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
        assert sorted(outcomes) == tokens
        winners: dict[int, str] = {}
        for token, won in outcomes.items():
            for i in won:
                assert i not in winners, f"key-{i} claimed by {winners[i]} and {token}"
                winners[i] = token
        assert sorted(winners) == list(range(KEYS))
        for i, token in winners.items():
            record = checker.get(f"key-{i}")
            assert record is not None and record.token == token
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        checker.drop()
        checker.close()
