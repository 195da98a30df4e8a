"""stormproof retries inside botocore, against moto's DynamoDB with injected failures."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from botocore.awsrequest import AWSResponse  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError  # noqa: E402

from stormproof.clock import ManualClock  # noqa: E402
from stormproof.errors import ConfigError, DeadlineExceeded  # noqa: E402
from stormproof.integrations.botocore import (  # noqa: E402
    AwsAttemptError,
    install_retries,
    sdk_standard_policy,
)
from stormproof.policies.backoff import Constant, Exponential, Jitter  # noqa: E402
from stormproof.policies.budget import AwsRetryQuota  # noqa: E402
from stormproof.policies.deadline import Deadline, deadline_scope  # noqa: E402
from stormproof.policies.retry import RetryPolicy  # noqa: E402
from stormproof.testing import instant_sleeps  # noqa: E402

TABLE = "orders"
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A DynamoDB client on moto with one table holding one item; fake credentials."""
    for name, value in _AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with moto.mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName=TABLE, Item={"id": {"S": "1"}, "total": {"N": "42"}})
        yield client


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def error_response(status: int, code: str | None, headers: dict[str, str] | None = None) -> Any:
    body = b"{}" if code is None else json.dumps({"__type": code, "message": "injected"}).encode()
    return AWSResponse(
        "https://dynamodb.us-east-1.amazonaws.com/",
        status,
        {"content-type": "application/x-amz-json-1.0", **(headers or {})},
        _Raw(body),
    )


class Faults:
    """A before-send handler that answers the first ``failures`` GetItem attempts itself."""

    def __init__(self, client: Any, failures: int, make: Callable[[], Any]) -> None:
        self.failures = failures
        self.make = make
        self.sent = 0
        self.quota_seen: list[float] = []
        self.budget: AwsRetryQuota | None = None
        # More specific than moto's generic before-send handler, so it answers first.
        client.meta.events.register("before-send.dynamodb.GetItem", self)

    def __call__(self, request: Any, **_: Any) -> Any:
        self.sent += 1
        if self.budget is not None:
            self.quota_seen.append(self.budget.available(0.0))
        if self.sent <= self.failures:
            return self.make()
        return None  # moto answers


def get(client: Any) -> Any:
    return client.get_item(TableName=TABLE, Key={"id": {"S": "1"}})


def test_throttling_is_retried_with_the_policys_seeded_delays(dynamodb: Any) -> None:
    clock = ManualClock()
    policy = sdk_standard_policy("dynamodb", rng=11)
    budget = policy.budget
    assert isinstance(budget, AwsRetryQuota)
    retries = install_retries(dynamodb, policy, clock=clock)
    faults = Faults(dynamodb, 2, lambda: error_response(400, "ThrottlingException"))
    faults.budget = budget
    response = get(dynamodb)
    assert response["Item"]["total"] == {"N": "42"}
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert faults.sent == 3
    assert retries.attempts == 3
    # Throttling errors back off from 1 s (the 2026 standard mode), drawn from the seeded rng.
    rng = random.Random(11)
    throttled = Exponential(base=1.0, factor=2.0, cap=20.0, jitter=Jitter.FULL)
    assert clock.sleeps == [throttled.delay(1, None, rng), throttled.delay(2, None, rng)]
    # The quota charged 5 per throttling retry, and the success refunded the last charge.
    assert faults.quota_seen == [500.0, 495.0, 490.0]
    assert budget.available(0.0) == 495.0


def test_server_errors_use_the_fast_backoff_and_attempts_are_the_policys(dynamodb: Any) -> None:
    clock = ManualClock()
    install_retries(dynamodb, sdk_standard_policy("dynamodb", rng=3), clock=clock)
    faults = Faults(dynamodb, 10, lambda: error_response(503, None))
    with pytest.raises(ClientError) as raised:
        get(dynamodb)
    assert faults.sent == 4  # DynamoDB's SDK default: 4 attempts
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert raised.value.response["ResponseMetadata"]["StormproofGiveUp"] == "attempts_exhausted"
    rng = random.Random(3)
    fast = Exponential(base=0.025, factor=2.0, cap=20.0, jitter=Jitter.FULL)
    assert clock.sleeps == [fast.delay(n, None, rng) for n in (1, 2, 3)]


@pytest.mark.parametrize("attempts", [1, 2, 6])
def test_botocores_own_retries_are_off(dynamodb: Any, attempts: int) -> None:
    policy = RetryPolicy(max_attempts=attempts, backoff=Constant(0.5))
    install_retries(dynamodb, policy, clock=ManualClock())
    faults = Faults(dynamodb, 100, lambda: error_response(500, None))
    with pytest.raises(ClientError):
        get(dynamodb)
    assert faults.sent == attempts


def test_the_quota_stops_retries_once_exhausted(dynamodb: Any) -> None:
    quota = AwsRetryQuota(capacity=10.0, retry_cost=5.0)
    policy = RetryPolicy(max_attempts=3, backoff=Constant(0.1), budget=quota)
    retries = install_retries(dynamodb, policy, clock=ManualClock())
    faults = Faults(dynamodb, 100, lambda: error_response(500, None))
    with pytest.raises(ClientError):
        get(dynamodb)
    assert faults.sent == 3
    assert quota.available(0.0) == 0.0
    with pytest.raises(ClientError) as raised:
        get(dynamodb)
    assert faults.sent == 4  # one attempt: the retry was refused
    assert raised.value.response["ResponseMetadata"]["StormproofGiveUp"] == "budget_exhausted"
    assert retries.give_ups == {"attempts_exhausted": 1, "budget_exhausted": 1}


def test_non_retryable_errors_are_returned_at_once(dynamodb: Any) -> None:
    install_retries(dynamodb, sdk_standard_policy("dynamodb"), clock=ManualClock())
    faults = Faults(dynamodb, 1, lambda: error_response(400, "ValidationException"))
    with pytest.raises(ClientError) as raised:
        get(dynamodb)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert faults.sent == 1


def test_connection_errors_and_timeouts_are_retried_and_timeouts_priced_apart(
    dynamodb: Any,
) -> None:
    policy = sdk_standard_policy("dynamodb", version="2.0", rng=1)
    budget = policy.budget
    assert isinstance(budget, AwsRetryQuota)
    install_retries(dynamodb, policy, clock=ManualClock())
    errors: list[Exception] = [
        EndpointConnectionError(endpoint_url="https://dynamodb"),
        ReadTimeoutError(endpoint_url="https://dynamodb"),
    ]

    def fail() -> Any:
        raise errors.pop(0)

    faults = Faults(dynamodb, 2, fail)
    faults.budget = budget
    with instant_sleeps() as sleeps:
        assert get(dynamodb)["Item"]["id"] == {"S": "1"}
    assert faults.sent == 3
    assert len(sleeps) == 2
    assert faults.quota_seen == [500.0, 495.0, 485.0]  # 5 for the error, 10 for the timeout


def test_retry_after_header_replaces_the_backoff(dynamodb: Any) -> None:
    clock = ManualClock()
    install_retries(dynamodb, sdk_standard_policy("dynamodb", rng=5), clock=clock)
    Faults(dynamodb, 1, lambda: error_response(503, None, {"x-amz-retry-after": "1500"}))
    get(dynamodb)
    assert clock.sleeps == [1.5]


def test_the_context_deadline_stops_retries_and_refuses_late_calls(dynamodb: Any) -> None:
    clock = ManualClock(50.0)
    policy = RetryPolicy(max_attempts=5, backoff=Constant(1.0))
    install_retries(dynamodb, policy, clock=clock)
    faults = Faults(dynamodb, 100, lambda: error_response(500, None))
    with deadline_scope(Deadline(52.5)), pytest.raises(ClientError) as raised:
        get(dynamodb)
    assert faults.sent == 3  # at 50, 51, 52; a fourth at 53 would be past 52.5
    assert raised.value.response["ResponseMetadata"]["StormproofGiveUp"] == "deadline"
    with deadline_scope(Deadline(clock.now())), pytest.raises(DeadlineExceeded):
        get(dynamodb)
    assert faults.sent == 3


def test_the_policy_sees_what_botocore_classified(dynamodb: Any) -> None:
    seen: list[AwsAttemptError] = []

    def retry_on(error: BaseException) -> bool:
        assert isinstance(error, AwsAttemptError)
        seen.append(error)
        return not error.throttling  # this policy never retries throttling

    policy = RetryPolicy(max_attempts=3, backoff=Constant(0.0), retry_on=retry_on)
    install_retries(dynamodb, policy, clock=ManualClock())
    Faults(dynamodb, 1, lambda: error_response(400, "ProvisionedThroughputExceededException"))
    with pytest.raises(ClientError):
        get(dynamodb)
    assert [(e.operation, e.code, e.status, e.throttling) for e in seen] == [
        ("GetItem", "ProvisionedThroughputExceededException", 400, True)
    ]


def test_presets_match_the_sdk_defaults() -> None:
    assert sdk_standard_policy("sqs").max_attempts == 3
    assert sdk_standard_policy("dynamodb").max_attempts == 4
    assert sdk_standard_policy("dynamodb").backoff == Exponential(0.025, 2.0, 20.0, Jitter.FULL)
    assert sdk_standard_policy("sqs").backoff == Exponential(0.05, 2.0, 20.0, Jitter.FULL)
    assert sdk_standard_policy("sqs", version="2.0").backoff == Exponential(1.0, 2.0, 20.0)
    quota = sdk_standard_policy("sqs").budget
    assert isinstance(quota, AwsRetryQuota)
    assert (quota.capacity, quota.retry_cost, quota.throttling_cost) == (500.0, 14.0, 5.0)


def test_bad_arguments_name_the_field(dynamodb: Any) -> None:
    with pytest.raises(ConfigError, match="client"):
        install_retries(object())
    with pytest.raises(ConfigError, match="policy"):
        install_retries(dynamodb, policy="standard")  # type: ignore[arg-type]
    adaptive = boto3.client(
        "dynamodb", region_name="us-east-1", config=Config(retries={"mode": "adaptive"})
    )
    with pytest.raises(ConfigError, match="adaptive"):
        install_retries(adaptive)
