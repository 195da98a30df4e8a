"""DynamoDB specifics, under moto's in-process mock: URLs, layout, TTL, concurrent claims."""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from store_services import store_url

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.stores.base import SCHEMA_VERSION, RecordStatus

pytest.importorskip("boto3", reason="the aws extra is not installed")
pytest.importorskip("moto", reason="moto is not installed")

from botocore.exceptions import ClientError
from moto.dynamodb.models.table import Table

from stormproof.stores.dynamodb import (
    DEFAULT_TTL_ATTRIBUTE,
    SCHEMA_KEY,
    DynamoDBStore,
    DynamoDBURL,
    parse_url,
)

T0 = 1_700_000_000.0
LEASE = 30.0
TTL = 3600.0


@pytest.fixture
def url(aws_mock: None, tmp_path: Path) -> str:
    return store_url("dynamodb", tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[DynamoDBStore]:
    opened = DynamoDBStore(url)
    opened.init()
    try:
        yield opened
    finally:
        opened.drop()
        opened.close()


def _raw(store: DynamoDBStore, item_key: str) -> dict[str, Any] | None:
    client = store._get_client()
    item: dict[str, Any] | None = client.get_item(
        TableName=store.table, Key={"key": {"S": item_key}}, ConsistentRead=True
    ).get("Item")
    return item


# -- URLs ----------------------------------------------------------------------------------------


def test_a_url_is_parsed_with_defaults() -> None:
    assert parse_url("dynamodb://my-table") == DynamoDBURL("my-table")
    parsed = parse_url(
        "dynamodb://Orders.v2?region=eu-west-1&endpoint_url=http%3A%2F%2Flocalhost%3A8000"
        "&ttl_attribute=gone_at"
    )
    assert parsed == DynamoDBURL("Orders.v2", "eu-west-1", "http://localhost:8000", "gone_at")
    assert parsed.ttl_attribute != DEFAULT_TTL_ATTRIBUTE


def test_open_returns_the_dynamodb_store_without_calling_aws() -> None:
    store = stores.open("dynamodb://some-table?region=us-east-1")
    assert isinstance(store, DynamoDBStore)
    assert store.table == "some-table"
    assert store.ttl_attribute == DEFAULT_TTL_ATTRIBUTE
    store.close()


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("dynamo://table", "url"),
        ("dynamodb://table/extra", "url"),
        ("dynamodb://table#frag", "url"),
        ("dynamodb://ab", "table"),
        ("dynamodb://", "table"),
        ("dynamodb://bad%20name", "table"),
        ("dynamodb://user@table", "table"),
        ("dynamodb://table:8000", "table"),
        ("dynamodb://" + "t" * 256, "table"),
        ("dynamodb://table?region=", "region"),
        ("dynamodb://table?region=us%20east", "region"),
        ("dynamodb://table?region=-us-east-1", "region"),
        ("dynamodb://table?endpoint_url=localhost:8000", "endpoint_url"),
        ("dynamodb://table?endpoint_url=ftp://host", "endpoint_url"),
        ("dynamodb://table?endpoint_url=http://", "endpoint_url"),
        ("dynamodb://table?endpoint_url=http://host:99999", "endpoint_url"),
        ("dynamodb://table?ttl_attribute=", "ttl_attribute"),
        ("dynamodb://table?ttl_attribute=a%20b", "ttl_attribute"),
        ("dynamodb://table?ttl_attribute=status", "ttl_attribute"),
        ("dynamodb://table?ttl_attribute=expires_at", "ttl_attribute"),
        ("dynamodb://table?ttl_attribute=key", "ttl_attribute"),
        ("dynamodb://table?region=us-east-1&region=eu-west-1", "region"),
        ("dynamodb://table?table=other", "table"),
        ("dynamodb://table?prefix=x", "prefix"),
    ],
)
def test_bad_urls_raise_config_error_naming_the_field(url: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        stores.open(url)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_missing_boto3_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes ``import boto3`` fail
    with pytest.raises(ConfigError, match=r"stormproof\[aws\]"):
        DynamoDBStore("dynamodb://table?region=us-east-1")


def test_no_region_anywhere_is_a_config_error(
    aws_mock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    store = DynamoDBStore("dynamodb://table")
    with pytest.raises(ConfigError) as caught:
        store.init()
    assert caught.value.field == "region"


# -- schema and layout ---------------------------------------------------------------------------


def test_schema_version_is_none_before_init_and_recorded_after(url: str) -> None:
    store = DynamoDBStore(url)
    assert store.schema_version() is None  # no table yet
    store.init()
    store.init()
    assert store.schema_version() == SCHEMA_VERSION
    store.drop()
    assert store.schema_version() is None
    store.drop()  # dropping a missing table is fine
    store.close()


def test_no_user_key_can_collide_with_the_schema_item(store: DynamoDBStore) -> None:
    for key in (SCHEMA_KEY, "", "r#", "r#" + SCHEMA_KEY):
        claim = store.claim(key, "h", f"tok-{key}", T0, lease=LEASE, ttl=TTL)
        assert claim.claimed, key
        assert store.complete(key, f"tok-{key}", '"done"', T0 + 1, ttl=TTL)
    assert store.schema_version() == SCHEMA_VERSION
    assert _raw(store, SCHEMA_KEY) == {"key": {"S": SCHEMA_KEY}, "version": {"N": "1"}}
    record = store.get(SCHEMA_KEY)
    assert record is not None and record.key == SCHEMA_KEY and record.result == '"done"'
    # "r#" and "r#r#" are the items of "" and "r#": distinct keys stay distinct records.
    assert {store.get(k).token for k in ("", "r#")} == {"tok-", "tok-r#"}  # type: ignore[union-attr]
    assert store.release("unknown", "tok") is False


def test_an_existing_table_with_another_key_schema_is_refused(url: str) -> None:
    store = DynamoDBStore(url)
    client = store._get_client()
    client.create_table(
        TableName=store.table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigError) as caught:
        store.init()
    assert caught.value.field == "table"
    store.drop()
    store.close()


def test_times_round_trip_exactly(store: DynamoDBStore) -> None:
    for i, now in enumerate([0.1 + 0.2, 1e-7, 1_700_000_000.123456789, 2.0**40 + 0.5, 1e20]):
        lease, ttl = 1 / 3, math.pi * 1000
        claim = store.claim(f"k{i}", "h", "t", now, lease=lease, ttl=ttl)
        record = store.get(f"k{i}")
        assert record == claim.record
        assert record is not None
        assert record.expires_at == now + ttl and record.lease_expires_at == now + lease
    with pytest.raises(ValueError, match="inf"):
        store.claim("inf", "h", "t", T0, lease=LEASE, ttl=math.inf)


def test_keys_too_long_for_dynamodb_are_refused_clearly(store: DynamoDBStore) -> None:
    longest = "é" * 1023  # 2,046 bytes + the 2-byte prefix = DynamoDB's limit
    assert store.claim(longest, "h", "t", T0, lease=LEASE, ttl=TTL).claimed
    too_long = longest + "x"
    with pytest.raises(ValueError, match="2046"):
        store.claim(too_long, "h", "t", T0, lease=LEASE, ttl=TTL)
    assert store.get(too_long) is None
    assert not store.complete(too_long, "t", "1", T0, ttl=TTL)
    assert not store.fail(too_long, "t", "1", T0, ttl=TTL)
    assert not store.release(too_long, "t")


def test_a_lost_claim_reads_the_item_when_the_error_does_not_carry_it(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert store.claim("k", "h", "first", T0, lease=LEASE, ttl=TTL).claimed
    client = store._get_client()
    put_item: Callable[..., Any] = client.put_item

    def without_old_item(**kwargs: Any) -> Any:  # as DynamoDB Local answers
        try:
            return put_item(**kwargs)
        except ClientError as error:
            error.response.pop("Item", None)
            raise

    monkeypatch.setattr(client, "put_item", without_old_item)
    lost = store.claim("k", "h", "second", T0 + 1, lease=LEASE, ttl=TTL)
    assert not lost.claimed and lost.record.token == "first"


# -- TTL -------------------------------------------------------------------------------------------


def test_init_enables_ttl_on_the_ttl_attribute(store: DynamoDBStore) -> None:
    client = store._get_client()
    ttl = client.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": DEFAULT_TTL_ATTRIBUTE}
    store.init()  # already enabled: no error


def test_a_custom_ttl_attribute_holds_the_integer_expiry_epoch(aws_mock: None) -> None:
    store = DynamoDBStore("dynamodb://sp-test-ttl?region=us-east-1&ttl_attribute=gone_at")
    store.init()
    client = store._get_client()
    ttl = client.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "gone_at"}
    store.claim("k", "h", "t", T0 + 0.25, lease=LEASE, ttl=TTL)
    item = _raw(store, "r#k")
    assert item is not None and item["gone_at"] == {"N": str(int(T0 + TTL + 1))}
    store.complete("k", "t", "1", T0 + 10, ttl=60.0)
    item = _raw(store, "r#k")
    assert item is not None and item["gone_at"] == {"N": str(int(T0 + 70))}
    assert _raw(store, SCHEMA_KEY) is not None and "gone_at" not in (_raw(store, SCHEMA_KEY) or {})
    store.drop()
    store.close()


def test_ttl_that_cannot_be_enabled_only_logs(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = DynamoDBStore(url)
    client = store._get_client()

    def denied(**kwargs: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
            "UpdateTimeToLive",
        )

    monkeypatch.setattr(client, "update_time_to_live", denied)
    with caplog.at_level(logging.WARNING, logger="stormproof.stores.dynamodb"):
        store.init()
    assert "not enabled" in caplog.text
    assert store.schema_version() == SCHEMA_VERSION
    assert store.claim("k", "h", "t", T0, lease=LEASE, ttl=TTL).claimed
    store.drop()
    store.close()


# -- concurrency ---------------------------------------------------------------------------------


def test_threads_racing_for_the_same_keys_have_exactly_one_winner_each(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real DynamoDB applies a conditional write atomically per item; moto evaluates the condition
    # and stores the item in plain Python, so a thread switch in between could let two writes
    # pass. Serialising moto's put_item restores DynamoDB's guarantee; what is tested is the
    # store's use of it (a read-then-write claim would still produce several winners here).
    emulator_lock = threading.Lock()
    original: Callable[..., Any] = Table.put_item

    def atomic_put_item(self: Table, *args: Any, **kwargs: Any) -> Any:
        with emulator_lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(Table, "put_item", atomic_put_item)

    threads, keys = 8, [f"order-{i}" for i in range(100)]
    start = threading.Barrier(threads)
    wins: dict[str, list[str]] = {key: [] for key in keys}
    seen: dict[str, set[str]] = {key: set() for key in keys}
    errors: list[BaseException] = []
    record_lock = threading.Lock()

    def worker(number: int) -> None:
        token = f"worker-{number}"
        try:
            start.wait()
            for key in keys:
                claim = store.claim(key, "h", token, T0, lease=LEASE, ttl=TTL)
                with record_lock:
                    if claim.claimed:
                        wins[key].append(token)
                    seen[key].add(claim.record.token)
        except BaseException as error:  # reported below
            errors.append(error)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not errors
    assert all(len(winners) == 1 for winners in wins.values()), wins
    for key in keys:
        assert seen[key] == set(wins[key])  # every loser saw the winner's record
        record = store.get(key)
        assert record is not None and record.token == wins[key][0]
        assert record.status is RecordStatus.IN_PROGRESS
