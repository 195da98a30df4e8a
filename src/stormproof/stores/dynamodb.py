"""An Amazon DynamoDB store (boto3, the ``aws`` extra): one item per record, conditional writes.

    store = stormproof.stores.open("dynamodb://billing-idempotency?region=eu-west-1")

**URL.** ``dynamodb://TABLE`` with optional query parameters:

* ``region`` -- the AWS region (default: boto3's own resolution, e.g. ``AWS_DEFAULT_REGION``);
* ``endpoint_url`` -- an ``http(s)://`` endpoint, e.g. DynamoDB Local (``http://localhost:8000``);
* ``ttl_attribute`` -- the attribute holding the record's expiry as an integer epoch, for
  DynamoDB's own TTL feature (default ``expires_at_epoch``).

``TABLE`` is a DynamoDB table name (3 to 255 of ``A-Z a-z 0-9 _ . -``). Invalid values raise
:class:`~stormproof.errors.ConfigError` naming the field (``table``, ``region``,
``endpoint_url``, ``ttl_attribute``, or an unknown parameter's name). Credentials come from
boto3's usual chain (environment, shared files, instance roles); never put them in the URL.
boto3 is imported when a store is constructed, so the module itself needs nothing.

**Layout.** One table with the partition key ``key`` (string). The record of ``key`` is the
item ``r#{key}`` with the attributes ``status``, ``payload_hash``, ``token``, ``expires_at``,
``lease_expires_at``, ``result`` (completed or failed only) and the TTL attribute. ``init``
writes the schema item ``__stormproof_schema__`` (attribute ``version``); since every record
key starts with ``r#``, no idempotency key can name it. A key whose item key would exceed
DynamoDB's 2,048-byte partition-key limit (UTF-8) is rejected by ``claim`` with ``ValueError``;
records larger than DynamoDB's 400 KB item limit fail with boto3's ``ClientError``.

**Numbers.** Times are written as DynamoDB numbers (``N``) so that conditions compare them
numerically. A float is sent as the decimal text of ``repr(float)`` -- the shortest text that
parses back to the same float, at most 17 significant digits, well inside DynamoDB's 38 -- and
read back with ``float()``, so every stored time round-trips exactly. The low-level client is
used, so no ``Decimal`` context (boto3's resource layer traps inexact values) is involved.
Non-finite times are rejected with ``ValueError`` (DynamoDB has no NaN or infinity).

**Atomicity.** ``claim`` is one ``PutItem`` whose ``ConditionExpression`` accepts a missing,
expired, failed, or in-progress-with-lapsed-lease item; DynamoDB evaluates it atomically per item,
so among concurrent claimers exactly one wins. On ``ConditionalCheckFailedException`` the existing
item comes back in the error (``ReturnValuesOnConditionCheckFailure=ALL_OLD``); where an emulator
omits it, a strongly consistent ``GetItem`` reads it, and the claim is retried if the item was
deleted in between. ``complete``/``fail``/``extend`` (``UpdateItem``) and ``release``
(``DeleteItem``) are conditional on ``token`` and ``status = in_progress``, so a fenced-off worker
changes nothing and gets ``False``. ``extend`` is one ``UpdateItem`` when the new lease ends before
the record expires (the usual case), and a second one, which also moves ``expires_at`` and the TTL
attribute, when it would not (update expressions have no ``max``). ``get`` and ``schema_version``
read consistently. The caller's ``now`` is the only clock used for the semantics.

**Expiry.** Whether a record has expired is decided only by ``expires_at`` against the caller's
``now``. The TTL attribute (``ceil(expires_at)``) additionally lets DynamoDB delete expired
items by itself, lazily (typically within days); once it has, ``get`` returns ``None`` instead of
the expired record, and ``claim`` behaves the same either way. ``init`` enables TTL on the table
for that attribute. This is best effort: if TTL is already enabled (on any attribute), being
enabled or disabled, or the credentials may not call ``UpdateTimeToLive`` (``AccessDenied``), or
the endpoint does not implement it (older DynamoDB Local), ``init`` logs the reason and goes on:
only storage clean-up is affected, never the semantics.

**Table.** ``init`` creates the table when missing (on-demand capacity, ``PAY_PER_REQUEST``),
waits until it is ``ACTIVE``, enables TTL and writes the schema item; it is idempotent and safe
to run from several processes at once. An existing table must have ``key`` (string) as its only
key, else ``init`` raises ``ConfigError``. ``drop`` deletes the table (tests only).
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from stormproof._aws_url import check_endpoint_url, check_region, query_parameters
from stormproof._validate import int_at_least
from stormproof.errors import ConfigError
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus

__all__ = ["DEFAULT_TTL_ATTRIBUTE", "SCHEMA_KEY", "DynamoDBStore", "DynamoDBURL", "parse_url"]

#: The TTL attribute when the URL names none.
DEFAULT_TTL_ATTRIBUTE: Final = "expires_at_epoch"
#: The partition key of the schema-version item (record keys all start with ``r#``).
SCHEMA_KEY: Final = "__stormproof_schema__"

_log = logging.getLogger(__name__)

_KEY: Final = "key"
_RECORD_PREFIX: Final = "r#"
_MAX_KEY_BYTES: Final = 2048
_ATTRIBUTES: Final = ("key", "status", "payload_hash", "token", "expires_at", "lease_expires_at")
_RESERVED_ATTRIBUTES: Final = (*_ATTRIBUTES, "result", "version")
_PARAMS: Final = ("region", "endpoint_url", "ttl_attribute")
_TABLE = re.compile(r"[A-Za-z0-9_.\-]{3,255}")
_ATTRIBUTE = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
#: How often ``claim`` retries when the item it lost to vanished before it could be read.
_CLAIM_ATTEMPTS: Final = 8
# UpdateTimeToLive errors that leave TTL off without failing ``init`` (see the module docstring).
_TTL_TOLERATED: Final = frozenset(
    {
        "AccessDeniedException",
        "ValidationException",
        "UnknownOperationException",
        "LimitExceededException",
        "InvalidParameterValue",
    }
)
_WAITER: Final = {"Delay": 1, "MaxAttempts": 300}

# Expressions alias every attribute (``key``, ``status``, ``token`` and ``result`` are DynamoDB
# reserved words); DynamoDB rejects names an expression does not use, so each has its own map.
_CLAIMABLE: Final = (
    "attribute_not_exists(#k) OR #e <= :now OR #s = :failed OR (#s = :in_progress AND #l <= :now)"
)
_CLAIMABLE_NAMES: Final = {
    "#k": "key",
    "#s": "status",
    "#e": "expires_at",
    "#l": "lease_expires_at",
}
_HELD: Final = "#t = :token AND #s = :in_progress"
_HELD_NAMES: Final = {"#t": "token", "#s": "status"}


@dataclass(frozen=True, slots=True)
class DynamoDBURL:
    """A parsed ``dynamodb://`` URL."""

    table: str
    region: str | None = None
    endpoint_url: str | None = None
    ttl_attribute: str = DEFAULT_TTL_ATTRIBUTE


def parse_url(url: str) -> DynamoDBURL:
    """Parse and validate a ``dynamodb://TABLE?...`` URL; ConfigError naming the bad field."""
    if not isinstance(url, str):
        raise ConfigError("url", "must be a string", url)
    parts = urlsplit(url)
    if parts.scheme != "dynamodb":
        raise ConfigError("url", "must start with dynamodb://", url)
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError("url", "must be dynamodb://TABLE?parameters (no path or fragment)", url)
    table = unquote(parts.netloc)
    if not _TABLE.fullmatch(table):
        raise ConfigError(
            "table", "must be a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -)", table
        )
    given = query_parameters(url, parts.query, _PARAMS, "the dynamodb store")
    region = check_region(given.get("region"))
    endpoint_url = check_endpoint_url(given.get("endpoint_url"))
    ttl_attribute = given.get("ttl_attribute", DEFAULT_TTL_ATTRIBUTE)
    if not _ATTRIBUTE.fullmatch(ttl_attribute):
        raise ConfigError("ttl_attribute", "must be 1 to 255 of A-Z a-z 0-9 _ . -", ttl_attribute)
    if ttl_attribute in _RESERVED_ATTRIBUTES:
        raise ConfigError(
            "ttl_attribute", "names an attribute the store uses itself", ttl_attribute
        )
    return DynamoDBURL(table, region, endpoint_url, ttl_attribute)


def _import(module: str) -> Any:
    """Import a boto3 module (untyped: boto3 ships no annotations), or explain the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            "url", "the dynamodb store needs boto3: pip install 'stormproof[aws]'", module
        ) from None


def _number(value: float) -> dict[str, str]:
    """A float as a DynamoDB number that reads back as the same float (see *Numbers*)."""
    if not math.isfinite(value):
        raise ValueError(f"DynamoDB cannot store the time {value!r}")
    return {"N": str(Decimal(repr(float(value))))}


def _item_key(key: str) -> str:
    return _RECORD_PREFIX + key


def _too_long(item_key: str) -> bool:
    """Whether DynamoDB would refuse ``item_key`` as a partition key (over 2,048 bytes)."""
    return len(item_key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES


def _record(item: dict[str, Any]) -> IdempotencyRecord:
    result = item.get("result")
    return IdempotencyRecord(
        str(item["key"]["S"])[len(_RECORD_PREFIX) :],
        RecordStatus(item["status"]["S"]),
        str(item["payload_hash"]["S"]),
        str(item["token"]["S"]),
        float(item["expires_at"]["N"]),
        float(item["lease_expires_at"]["N"]),
        None if result is None else str(result["S"]),
    )


class DynamoDBStore:
    """Idempotency records in a DynamoDB table. See the module docstring for the URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._config = parse_url(url)
        self._boto3 = _import("boto3")
        self._errors = _import("botocore.exceptions")
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def table(self) -> str:
        """The table name."""
        return self._config.table

    @property
    def ttl_attribute(self) -> str:
        """The attribute holding the integer epoch for DynamoDB's TTL."""
        return self._config.ttl_attribute

    # -- client ----------------------------------------------------------------------------------

    def _get_client(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                options: dict[str, str] = {}
                if self._config.region is not None:
                    options["region_name"] = self._config.region
                if self._config.endpoint_url is not None:
                    options["endpoint_url"] = self._config.endpoint_url
                session = self._boto3.session.Session()
                try:
                    self._client = session.client("dynamodb", **options)
                except self._errors.NoRegionError:
                    raise ConfigError(
                        "region", "is not in the URL and boto3 has no default region"
                    ) from None
            return self._client

    def _code(self, error: BaseException) -> str | None:
        """The AWS error code of a botocore ``ClientError``, else ``None``."""
        if isinstance(error, self._errors.ClientError):
            response: dict[str, Any] = error.response
            return str(response.get("Error", {}).get("Code", ""))
        return None

    # -- schema ----------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the table if missing, wait until ACTIVE, enable TTL, record the version."""
        client = self._get_client()
        table = self._config.table
        try:
            description: dict[str, Any] | None = client.describe_table(TableName=table)["Table"]
        except self._errors.ClientError as error:
            if self._code(error) != "ResourceNotFoundException":
                raise
            description = None
            try:
                client.create_table(
                    TableName=table,
                    AttributeDefinitions=[{"AttributeName": _KEY, "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": _KEY, "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            except self._errors.ClientError as create_error:
                if self._code(create_error) != "ResourceInUseException":  # created meanwhile
                    raise
        if description is None or description.get("TableStatus") != "ACTIVE":
            client.get_waiter("table_exists").wait(TableName=table, WaiterConfig=_WAITER)
            description = client.describe_table(TableName=table)["Table"]
        assert description is not None
        self._check_key_schema(description)
        self._enable_ttl(client)
        try:
            client.put_item(
                TableName=table,
                Item={_KEY: {"S": SCHEMA_KEY}, "version": {"N": str(SCHEMA_VERSION)}},
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": _KEY},
            )
        except self._errors.ClientError as error:
            if self._code(error) != "ConditionalCheckFailedException":  # already recorded
                raise

    def _check_key_schema(self, description: dict[str, Any]) -> None:
        key_schema = description.get("KeySchema")
        types = {
            d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]
        }
        if key_schema != [{"AttributeName": _KEY, "KeyType": "HASH"}] or types.get(_KEY) != "S":
            raise ConfigError(
                "table",
                f"exists with another key schema ({key_schema}); the store needs the string"
                f" partition key {_KEY!r} and no sort key",
                self._config.table,
            )

    def _enable_ttl(self, client: Any) -> None:
        """Turn on DynamoDB TTL for the TTL attribute; best effort (see the module docstring)."""
        table, attribute = self._config.table, self._config.ttl_attribute
        try:
            ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
        except self._errors.ClientError as error:
            _log.info("DynamoDB TTL of %s not readable (%s); trying to enable it", table, error)
            ttl = {}
        status = ttl.get("TimeToLiveStatus")
        if status in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != attribute:
                _log.warning(
                    "DynamoDB TTL of %s is on attribute %r, not %r: expired records are not"
                    " deleted by DynamoDB (they are still treated as expired)",
                    table,
                    ttl.get("AttributeName"),
                    attribute,
                )
            return
        try:
            client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
            )
        except self._errors.ClientError as error:
            if self._code(error) not in _TTL_TOLERATED:
                raise
            _log.warning(
                "DynamoDB TTL of %s not enabled (%s); records stay until deleted", table, error
            )

    def schema_version(self) -> int | None:
        """The version recorded by :meth:`init`, or ``None`` before it (or without the table)."""
        try:
            response = self._get_client().get_item(
                TableName=self._config.table,
                Key={_KEY: {"S": SCHEMA_KEY}},
                ConsistentRead=True,
            )
        except self._errors.ClientError as error:
            if self._code(error) == "ResourceNotFoundException":
                return None
            raise
        item = response.get("Item")
        return None if item is None else int(item["version"]["N"])

    # -- records ---------------------------------------------------------------------------------

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
        """Take ``key`` if it is free, expired, failed or its lease ran out (one PutItem)."""
        item_key = _item_key(key)
        if _too_long(item_key):
            raise ValueError(
                f"key is {len(key.encode('utf-8', 'surrogatepass'))} bytes in UTF-8; the"
                f" DynamoDB store allows at most {_MAX_KEY_BYTES - len(_RECORD_PREFIX)}"
            )
        expires_at, lease_expires_at = now + ttl, now + lease
        item = {
            "key": {"S": item_key},
            "status": {"S": RecordStatus.IN_PROGRESS.value},
            "payload_hash": {"S": payload_hash},
            "token": {"S": token},
            "expires_at": _number(expires_at),
            "lease_expires_at": _number(lease_expires_at),
            self._config.ttl_attribute: {"N": str(math.ceil(expires_at))},
        }
        values = {
            ":now": _number(now),
            ":failed": {"S": RecordStatus.FAILED.value},
            ":in_progress": {"S": RecordStatus.IN_PROGRESS.value},
        }
        client = self._get_client()
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                client.put_item(
                    TableName=self._config.table,
                    Item=item,
                    ConditionExpression=_CLAIMABLE,
                    ExpressionAttributeNames=_CLAIMABLE_NAMES,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except self._errors.ClientError as error:
                if self._code(error) != "ConditionalCheckFailedException":
                    raise
                existing = error.response.get("Item")
                if existing is None:  # an emulator without ALL_OLD: read it
                    existing = self._get_item(item_key)
                if existing is not None:
                    return Claim(False, _record(existing))
                continue  # the item was deleted in between: try again
            record = IdempotencyRecord(
                key, RecordStatus.IN_PROGRESS, payload_hash, token, expires_at, lease_expires_at
            )
            return Claim(True, record)
        raise RuntimeError(f"claim of {key!r} kept racing with deletions; giving up")

    def _finish_claim(
        self, status: RecordStatus, key: str, token: str, result: str, now: float, ttl: float
    ) -> bool:
        expires_at = now + ttl
        if _too_long(_item_key(key)):
            return False  # claim refuses such keys, so nobody holds it
        try:
            self._get_client().update_item(
                TableName=self._config.table,
                Key={_KEY: {"S": _item_key(key)}},
                UpdateExpression="SET #s = :status, #e = :expires, #l = :lease, #r = :result,"
                " #ttl = :epoch",
                ConditionExpression=_HELD,
                ExpressionAttributeNames={
                    **_HELD_NAMES,
                    "#e": "expires_at",
                    "#l": "lease_expires_at",
                    "#r": "result",
                    "#ttl": self._config.ttl_attribute,
                },
                ExpressionAttributeValues={
                    ":status": {"S": status.value},
                    ":expires": _number(expires_at),
                    ":lease": _number(now),
                    ":result": {"S": result},
                    ":epoch": {"N": str(math.ceil(expires_at))},
                    ":token": {"S": token},
                    ":in_progress": {"S": RecordStatus.IN_PROGRESS.value},
                },
            )
        except self._errors.ClientError as error:
            if self._code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        return self._finish_claim(RecordStatus.COMPLETED, key, token, result, now, ttl)

    def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return self._finish_claim(RecordStatus.FAILED, key, token, error, now, ttl)

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim (one ``UpdateItem``, two at most)."""
        item_key = _item_key(key)
        if _too_long(item_key):
            return False  # claim refuses such keys, so nobody holds it
        until = now + lease
        held_values = {
            ":token": {"S": token},
            ":in_progress": {"S": RecordStatus.IN_PROGRESS.value},
            ":until": _number(until),
        }
        client = self._get_client()
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                client.update_item(
                    TableName=self._config.table,
                    Key={_KEY: {"S": item_key}},
                    UpdateExpression="SET #l = :until",
                    ConditionExpression=f"{_HELD} AND #e >= :until",
                    ExpressionAttributeNames={
                        **_HELD_NAMES,
                        "#l": "lease_expires_at",
                        "#e": "expires_at",
                    },
                    ExpressionAttributeValues=held_values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return True
            except self._errors.ClientError as error:
                if self._code(error) != "ConditionalCheckFailedException":
                    raise
                old = error.response.get("Item")
                if old is None:  # an emulator without ALL_OLD: read it
                    old = self._get_item(item_key)
            if old is None or old["token"]["S"] != token or old["status"]["S"] != "in_progress":
                return False
            # Held, but the lease would outlive the record: move expires_at along with it.
            try:
                client.update_item(
                    TableName=self._config.table,
                    Key={_KEY: {"S": item_key}},
                    UpdateExpression="SET #l = :until, #e = :until, #ttl = :epoch",
                    ConditionExpression=f"{_HELD} AND #e < :until",
                    ExpressionAttributeNames={
                        **_HELD_NAMES,
                        "#l": "lease_expires_at",
                        "#e": "expires_at",
                        "#ttl": self._config.ttl_attribute,
                    },
                    ExpressionAttributeValues={
                        **held_values,
                        ":epoch": {"N": str(math.ceil(until))},
                    },
                )
                return True
            except self._errors.ClientError as error:
                if self._code(error) != "ConditionalCheckFailedException":
                    raise
                # expires_at or the holder changed in between: look again.
        return False

    def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds the claim."""
        if _too_long(_item_key(key)):
            return False  # claim refuses such keys, so nobody holds it
        try:
            self._get_client().delete_item(
                TableName=self._config.table,
                Key={_KEY: {"S": _item_key(key)}},
                ConditionExpression=_HELD,
                ExpressionAttributeNames=_HELD_NAMES,
                ExpressionAttributeValues={
                    ":token": {"S": token},
                    ":in_progress": {"S": RecordStatus.IN_PROGRESS.value},
                },
            )
        except self._errors.ClientError as error:
            if self._code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _get_item(self, item_key: str) -> dict[str, Any] | None:
        response = self._get_client().get_item(
            TableName=self._config.table, Key={_KEY: {"S": item_key}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not (a strongly consistent read)."""
        item_key = _item_key(key)
        if _too_long(item_key):
            return None  # claim refuses such keys, so there is no record
        item = self._get_item(item_key)
        return None if item is None else _record(item)

    def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Nothing to do: DynamoDB's TTL deletes expired items itself; returns 0."""
        int_at_least("limit", limit, 1)
        return 0

    def close(self) -> None:
        """Close the client; a later call opens a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def drop(self) -> None:
        """Delete the table and wait until it is gone (tests and tear-down only)."""
        client = self._get_client()
        try:
            client.delete_table(TableName=self._config.table)
        except self._errors.ClientError as error:
            if self._code(error) == "ResourceNotFoundException":
                return
            raise
        client.get_waiter("table_not_exists").wait(
            TableName=self._config.table, WaiterConfig=_WAITER
        )
