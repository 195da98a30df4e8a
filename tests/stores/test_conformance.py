"""One conformance suite for every store back end: the semantics of ``stores.base``."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.stores.base import SCHEMA_VERSION, IdempotencyStore, RecordStatus

T0 = 1_700_000_000.0  # epoch seconds
LEASE = 30.0
TTL = 3600.0


def test_init_is_idempotent_and_records_the_schema_version(store: IdempotencyStore) -> None:
    store.init()
    store.init()
    assert store.schema_version() == SCHEMA_VERSION


def test_first_claim_wins_and_a_duplicate_sees_it(store: IdempotencyStore) -> None:
    first = store.claim("order-1", "h1", "tok-a", T0, lease=LEASE, ttl=TTL)
    assert first.claimed
    assert first.record.status is RecordStatus.IN_PROGRESS
    assert first.record.lease_expires_at == T0 + LEASE
    assert first.record.expires_at == T0 + TTL
    duplicate = store.claim("order-1", "h1", "tok-b", T0 + 1, lease=LEASE, ttl=TTL)
    assert not duplicate.claimed
    assert duplicate.record.token == "tok-a"
    assert duplicate.record.payload_hash == "h1"


def test_complete_stores_the_result_for_later_duplicates(store: IdempotencyStore) -> None:
    store.claim("k", "h", "tok", T0, lease=LEASE, ttl=TTL)
    result = json.dumps({"charged": 42, "currency": "EUR", "note": "naïve ✓"})
    assert store.complete("k", "tok", result, T0 + 2, ttl=TTL)
    again = store.claim("k", "h", "other", T0 + 3, lease=LEASE, ttl=TTL)
    assert not again.claimed
    assert again.record.status is RecordStatus.COMPLETED
    assert again.record.result == result
    assert again.record.expires_at == T0 + 2 + TTL
    record = store.get("k")
    assert record is not None and json.loads(record.result or "") == json.loads(result)


def test_only_the_claim_holder_may_complete_release_or_fail(store: IdempotencyStore) -> None:
    store.claim("k", "h", "owner", T0, lease=LEASE, ttl=TTL)
    assert not store.complete("k", "intruder", "1", T0, ttl=TTL)
    assert not store.release("k", "intruder")
    assert not store.fail("k", "intruder", "{}", T0, ttl=TTL)
    record = store.get("k")
    assert record is not None and record.status is RecordStatus.IN_PROGRESS
    assert not store.complete("missing", "owner", "1", T0, ttl=TTL)


def test_an_expired_lease_can_be_taken_over_and_fences_the_old_owner(
    store: IdempotencyStore,
) -> None:
    store.claim("k", "h", "slow-worker", T0, lease=LEASE, ttl=TTL)
    assert not store.claim("k", "h", "new", T0 + LEASE - 0.5, lease=LEASE, ttl=TTL).claimed
    takeover = store.claim("k", "h", "new", T0 + LEASE, lease=LEASE, ttl=TTL)
    assert takeover.claimed and takeover.record.token == "new"
    assert not store.complete("k", "slow-worker", '"late"', T0 + LEASE + 1, ttl=TTL)
    assert store.complete("k", "new", '"fresh"', T0 + LEASE + 2, ttl=TTL)
    record = store.get("k")
    assert record is not None and record.result == '"fresh"'


def test_release_lets_a_retry_run(store: IdempotencyStore) -> None:
    store.claim("k", "h", "t1", T0, lease=LEASE, ttl=TTL)
    assert store.release("k", "t1")
    assert store.get("k") is None
    assert store.claim("k", "h", "t2", T0 + 1, lease=LEASE, ttl=TTL).claimed


def test_failed_records_keep_the_error_and_may_be_claimed_again(store: IdempotencyStore) -> None:
    store.claim("k", "h", "t1", T0, lease=LEASE, ttl=TTL)
    assert store.fail("k", "t1", '{"error": "ValueError"}', T0 + 1, ttl=TTL)
    record = store.get("k")
    assert record is not None and record.status is RecordStatus.FAILED
    assert record.result == '{"error": "ValueError"}'
    retry = store.claim("k", "h", "t2", T0 + 2, lease=LEASE, ttl=TTL)
    assert retry.claimed and retry.record.status is RecordStatus.IN_PROGRESS


def test_completed_records_expire_after_their_ttl(store: IdempotencyStore) -> None:
    store.claim("k", "h", "t1", T0, lease=LEASE, ttl=TTL)
    store.complete("k", "t1", "1", T0, ttl=10.0)
    assert not store.claim("k", "h", "t2", T0 + 9.9, lease=LEASE, ttl=TTL).claimed
    fresh = store.claim("k", "h2", "t2", T0 + 10.0, lease=LEASE, ttl=TTL)
    assert fresh.claimed and fresh.record.payload_hash == "h2"


def test_purge_expired_deletes_only_expired_records(store: IdempotencyStore) -> None:
    for key, ttl in (("a", 10.0), ("b", 20.0), ("keep", 1000.0)):
        store.claim(key, "h", f"t-{key}", T0, lease=LEASE, ttl=TTL)
        store.complete(key, f"t-{key}", "1", T0, ttl=ttl)
    store.claim("running", "h", "t-run", T0, lease=LEASE, ttl=TTL)
    self_expiring = store.url.split(":", 1)[0] in ("redis", "rediss", "dynamodb")
    if self_expiring:
        assert store.purge_expired(T0 + 30.0) == 0  # Redis keys and DynamoDB TTL expire alone
    else:
        assert store.purge_expired(T0 + 15.0, limit=5) == 1
        assert store.get("a") is None and store.get("b") is not None
        assert store.purge_expired(T0 + 30.0, limit=1) == 1
        assert store.get("b") is None
        assert store.purge_expired(T0 + 30.0) == 0
    kept = store.get("keep")
    assert kept is not None and kept.status is RecordStatus.COMPLETED
    running = store.get("running")
    assert running is not None and running.status is RecordStatus.IN_PROGRESS
    with pytest.raises(ConfigError) as caught:
        store.purge_expired(T0, limit=0)
    assert caught.value.field == "limit"


def test_the_holder_extends_its_lease_and_keeps_the_key(store: IdempotencyStore) -> None:
    store.claim("k", "h", "owner", T0, lease=LEASE, ttl=TTL)
    assert store.extend("k", "owner", T0 + 20, lease=LEASE)
    record = store.get("k")
    assert record is not None and record.status is RecordStatus.IN_PROGRESS
    assert record.lease_expires_at == T0 + 20 + LEASE
    assert record.expires_at == T0 + TTL  # well inside the TTL: unchanged
    assert record.token == "owner" and record.payload_hash == "h"
    # Past the original lease the key is still held; past the renewed one it is free.
    assert not store.claim("k", "h", "other", T0 + LEASE + 1, lease=LEASE, ttl=TTL).claimed
    takeover = store.claim("k", "h", "other", T0 + 20 + LEASE, lease=LEASE, ttl=TTL)
    assert takeover.claimed
    # ... and the old holder is fenced: it can neither renew nor complete any more.
    assert not store.extend("k", "owner", T0 + 51, lease=LEASE)
    assert not store.complete("k", "owner", "1", T0 + 51, ttl=TTL)
    record = store.get("k")
    assert record is not None and record.token == "other"
    assert record.lease_expires_at == T0 + 20 + 2 * LEASE


def test_only_the_holder_of_an_in_progress_claim_may_extend(store: IdempotencyStore) -> None:
    assert not store.extend("missing", "tok", T0, lease=LEASE)
    assert store.get("missing") is None  # extend never creates a record
    store.claim("k", "h", "owner", T0, lease=LEASE, ttl=TTL)
    assert not store.extend("k", "intruder", T0 + 1, lease=LEASE)
    record = store.get("k")
    assert record is not None and record.lease_expires_at == T0 + LEASE
    assert store.complete("k", "owner", '"done"', T0 + 2, ttl=TTL)
    assert not store.extend("k", "owner", T0 + 3, lease=LEASE)  # no longer in progress
    record = store.get("k")
    assert record is not None and record.status is RecordStatus.COMPLETED
    assert record.result == '"done"' and record.expires_at == T0 + 2 + TTL
    store.claim("f", "h", "owner", T0, lease=LEASE, ttl=TTL)
    store.fail("f", "owner", "{}", T0 + 1, ttl=TTL)
    assert not store.extend("f", "owner", T0 + 2, lease=LEASE)


def test_a_lapsed_lease_nobody_took_over_can_still_be_extended(store: IdempotencyStore) -> None:
    store.claim("k", "h", "owner", T0, lease=LEASE, ttl=TTL)
    assert store.extend("k", "owner", T0 + LEASE + 5, lease=LEASE)
    assert not store.claim("k", "h", "other", T0 + LEASE + 6, lease=LEASE, ttl=TTL).claimed


def test_an_extended_lease_carries_the_expiry_along(store: IdempotencyStore) -> None:
    # A record must not expire (and be claimable) while its renewed lease still runs.
    store.claim("k", "h", "owner", T0, lease=10.0, ttl=40.0)
    assert store.extend("k", "owner", T0 + 20, lease=30.0)
    record = store.get("k")
    assert record is not None
    assert record.lease_expires_at == record.expires_at == T0 + 50
    assert not store.claim("k", "h", "other", T0 + 45, lease=LEASE, ttl=TTL).claimed
    assert store.claim("k", "h", "other", T0 + 50, lease=LEASE, ttl=TTL).claimed
    # A shorter renewal moves only the lease (it may also shorten it).
    assert store.extend("k", "other", T0 + 51, lease=5.0)
    record = store.get("k")
    assert record is not None
    assert (record.lease_expires_at, record.expires_at) == (T0 + 56, T0 + 50 + TTL)


@given(renewals=st.lists(st.floats(min_value=0.5, max_value=100.0), min_size=1, max_size=6))
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_renewing_holder_is_never_taken_over(
    store: IdempotencyStore, renewals: list[float]
) -> None:
    # The holder renews at T0 + s1, T0 + s1 + s2, ... each time just before its lease ends; a
    # rival trying just before each renewal never wins, and one trying at the end always does.
    key = f"renew:{next(_examples)}"
    lease = 101.0
    assert store.claim(key, "h", "holder", T0, lease=lease, ttl=lease).claimed
    now = T0
    for step in renewals:
        now += step
        assert not store.claim(key, "h", "rival", now, lease=lease, ttl=lease).claimed
        assert store.extend(key, "holder", now, lease=lease)
    assert store.claim(key, "h", "rival", now + lease, lease=lease, ttl=lease).claimed
    assert not store.extend(key, "holder", now + lease, lease=lease)


def test_keys_are_independent(store: IdempotencyStore) -> None:
    assert store.claim("a", "h", "t", T0, lease=LEASE, ttl=TTL).claimed
    assert store.claim("b", "h", "t", T0, lease=LEASE, ttl=TTL).claimed
    assert store.get("c") is None


_examples = itertools.count()


@given(key=st.text(min_size=1, max_size=200), result=st.text(max_size=2000))
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_text_key_and_result_round_trip(store: IdempotencyStore, key: str, result: str) -> None:
    # The store is shared by the examples, so each one uses its own key.
    unique = f"{next(_examples)}:{key}"
    assert store.claim(unique, "h", "tok", T0, lease=LEASE, ttl=TTL).claimed
    assert store.complete(unique, "tok", json.dumps(result), T0 + 1, ttl=TTL)
    record = store.get(unique)
    assert record is not None and json.loads(record.result or "") == result
    assert record.key == unique


def test_unknown_scheme_is_rejected_with_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        stores.open("mysql://localhost/db")
