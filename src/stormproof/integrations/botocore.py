"""Run AWS SDK (botocore / boto3) calls under a stormproof retry policy and budget.

    import boto3
    from stormproof.integrations.botocore import install_retries, sdk_standard_policy

    client = boto3.client("dynamodb", region_name="eu-west-1")
    install_retries(client, sdk_standard_policy("dynamodb", rng=7))

How it plugs in. botocore's endpoint asks the ``needs-retry.<service>.<operation>`` event after
every attempt; the first handler that answers a number of seconds makes it sleep and retry, and
``None`` makes it return the response (or raise the error). The SDK's own retry handler is
registered there with the unique id ``retry-config-<service>`` in both the ``standard`` and the
``legacy`` mode (``botocore/client.py``, ``botocore/retries/standard.py``).
:func:`install_retries` unregisters that handler and registers stormproof's:

* ``before-call.<service>`` starts a :class:`~stormproof.policies.retry.RetryCall` per API call
  (so the call's deadline -- ``total_timeout`` or the context deadline -- and the budget see
  each call once), kept in the request context;
* ``needs-retry.<service>`` classifies the attempt **the way the SDK does** (botocore's own
  checkers: transient status codes 500/502/503/504, connection errors, throttling error codes,
  429 without a modelled error, errors modelled as retryable), then asks the policy. A retry
  sleeps on stormproof's clock (so :func:`stormproof.testing.instant_sleeps` and a
  ``ManualClock`` work) and answers ``0`` to botocore; a give-up answers ``None`` and the
  caller gets botocore's usual ``ClientError`` or exception. The give-up reason is added to
  ``ResponseMetadata`` as ``StormproofGiveUp`` when there is a parsed response.

What the policy is told about each failed attempt: an :class:`AwsAttemptError` with the error
``code``, HTTP ``status``, ``throttling`` (botocore's throttling detector) and ``retry_after``
(the ``x-amz-retry-after`` header, in seconds); connect and read timeouts arrive as
:class:`AwsAttemptTimeout`, a ``TimeoutError``, so budgets price them as timeouts. A successful
(2xx) response tells the budget, which refunds the retry cost like the SDK's quota.

Differences from the SDK worth knowing: a server's ``x-amz-retry-after`` *replaces* the backoff
(capped by ``max_server_delay``) where botocore takes ``max(backoff, min(header, backoff + 5))``;
``adaptive`` mode (client-side rate limiting) is refused rather than silently mixed; the
``amz-sdk-request`` header still reports the SDK's own ``max`` attempts.
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass
from typing import Any, Literal

from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError
from stormproof.policies import presets
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.policies.retry import GiveUp, RetryCall, RetryPolicy
from stormproof.run._common import INSTANT_SLEEPS

__all__ = [
    "AwsAttemptError",
    "AwsAttemptTimeout",
    "BotocoreRetries",
    "install_retries",
    "sdk_standard_policy",
]

#: Where the per-call state lives in botocore's request context.
_CONTEXT_KEY = "stormproof.retry_call"

#: Services whose SDK defaults differ (botocore ``retries/standard.py``: 4 attempts, and a
#: 25 ms base for non-throttling errors).
_DYNAMODB = ("dynamodb", "dynamodb-streams")


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"stormproof.integrations.botocore needs botocore: pip install 'stormproof[aws]' "
            f"({error})"
        ) from error


class AwsAttemptError(Exception):
    """One failed attempt of an AWS call, as the retry policy sees it.

    Attributes:
        operation: the API operation (``GetItem``).
        code: the AWS error code (``ThrottlingException``), or ``None``.
        status: the HTTP status, or ``None`` when no response came back.
        throttling: botocore classified the error as throttling (read by the ``2026`` preset's
            ``is_throttling`` and by throttling-aware budgets).
        retry_after: seconds from ``x-amz-retry-after``, or ``None``.
        cause: the exception botocore caught (connection errors, timeouts), or ``None``.
    """

    def __init__(
        self,
        operation: str,
        *,
        code: str | None,
        status: int | None,
        throttling: bool,
        retry_after: float | None,
        cause: BaseException | None,
    ) -> None:
        what = code or (type(cause).__name__ if cause is not None else f"HTTP {status}")
        super().__init__(f"{operation}: {what}")
        self.operation = operation
        self.code = code
        self.status = status
        self.throttling = throttling
        self.retry_after = retry_after
        self.cause = cause


class AwsAttemptTimeout(AwsAttemptError, TimeoutError):
    """An attempt that hit botocore's connect or read timeout."""


def sdk_standard_policy(
    service: str = "",
    *,
    version: Literal["2026", "2.0"] = "2026",
    max_attempts: int | None = None,
    rng: random.Random | int | None = None,
) -> RetryPolicy:
    """The retry policy of botocore's ``standard`` mode for ``service``, as a stormproof policy.

    ``version="2026"`` is what botocore 1.44 runs by default (its ``NEW_RETRIES_ENABLED`` is
    always on): 3 attempts; full-jitter backoff from 50 ms (25 ms for DynamoDB) for ordinary
    errors and from 1 s for throttling, capped at 20 s; a 500-token quota charging 14 per retry
    and 5 per throttling retry. DynamoDB and DynamoDB Streams get 4 attempts. ``"2.0"`` is the
    earlier standard mode (1 s base for every error, costs 5 and 10 for timeouts) still run by
    older SDKs -- see :func:`stormproof.policies.presets.aws_sdk_standard`.

    Share one policy per client, as the SDK shares one quota per client. Pass it to the
    simulator unchanged to A/B the SDK defaults against a stormproof configuration.
    """
    dynamodb = service in _DYNAMODB
    attempts = max_attempts if max_attempts is not None else (4 if dynamodb else 3)
    policy = presets.aws_sdk_standard(version, max_attempts=attempts, rng=rng)
    if dynamodb and version == "2026":
        policy = policy.replace(
            backoff=Exponential(base=0.025, factor=2.0, cap=20.0, jitter=Jitter.FULL)
        )
    return policy


@dataclass(slots=True)
class _Classified:
    success: bool
    error: AwsAttemptError | None


class BotocoreRetries:
    """The event handlers that run one client's retries under ``policy``.

    Build it with :func:`install_retries`. ``attempts`` and ``give_ups`` count, for tests and
    telemetry, every attempt seen and every give-up by reason.
    """

    def __init__(self, policy: RetryPolicy, clock: SleepingClock) -> None:
        standard = _import("botocore.retries.standard")
        special = _import("botocore.retries.special")
        self.policy = policy
        self.clock = clock
        self.attempts = 0
        self.give_ups: dict[str, int] = {}
        self._adapter = standard.RetryEventAdapter()
        checkers = [
            standard.TransientRetryableChecker(),
            standard.ThrottledRetryableChecker(),
            standard.ModeledRetryableChecker(),
            standard.OrRetryChecker(
                [special.RetryIDPCommunicationError(), special.RetryDDBChecksumError()]
            ),
        ]
        if hasattr(standard, "ThrottlingStatusCodeChecker"):  # botocore >= 1.43
            checkers.insert(2, standard.ThrottlingStatusCodeChecker())
        self._retryable = standard.OrRetryChecker(checkers)
        self._throttling = standard.ThrottlingErrorDetector(self._adapter)
        exceptions = _import("botocore.exceptions")
        self._timeouts = (exceptions.ConnectTimeoutError, exceptions.ReadTimeoutError)

    # -- event handlers -------------------------------------------------------------------

    def before_call(self, context: dict[str, Any], **_: Any) -> None:
        """``before-call``: start the call (raises ``DeadlineExceeded`` if none is left)."""
        context[_CONTEXT_KEY] = self.policy.start(self.clock.now())

    def needs_retry(self, **kwargs: Any) -> float | None:
        """``needs-retry``: ``0`` (after sleeping the policy's delay) to retry, ``None`` not to."""
        self.attempts += 1
        context: dict[str, Any] = kwargs["request_dict"]["context"]
        call: RetryCall | None = context.get(_CONTEXT_KEY)
        if call is None:  # a request that did not come through the client's API call
            call = context[_CONTEXT_KEY] = self.policy.start(self.clock.now())
        retry_context = self._adapter.create_retry_context(**kwargs)
        outcome = self._classify(retry_context, kwargs)
        now = self.clock.now()
        if outcome.error is None:
            if outcome.success:
                call.on_success(now)
            return None
        decision = call.on_failure(now, outcome.error)
        if isinstance(decision, GiveUp):
            reason = decision.reason.value
            self.give_ups[reason] = self.give_ups.get(reason, 0) + 1
            parsed = retry_context.parsed_response
            if parsed is not None:
                parsed.setdefault("ResponseMetadata", {})["StormproofGiveUp"] = reason
            return None
        recorded = INSTANT_SLEEPS.get()
        if recorded is not None:
            recorded.append(decision.delay)
        elif decision.delay > 0.0:
            self.clock.sleep(decision.delay)
        # Zero, not None: botocore retries and sleeps time.sleep(0) itself.
        return 0.0

    # -- classification -------------------------------------------------------------------

    def _classify(self, retry_context: Any, kwargs: dict[str, Any]) -> _Classified:
        http = retry_context.http_response
        caught = retry_context.caught_exception
        status = None if http is None else int(http.status_code)
        if caught is None and status is not None and status < 300:
            return _Classified(True, None)
        if not self._retryable.is_retryable(retry_context):
            return _Classified(False, None)
        retry_after = None
        if http is not None:
            raw = http.headers.get("x-amz-retry-after")
            if raw is not None:
                try:
                    milliseconds = int(raw)
                except ValueError:
                    milliseconds = -1
                retry_after = milliseconds / 1000.0 if milliseconds >= 0 else None
        operation = kwargs["operation"].name
        error_type = AwsAttemptTimeout if isinstance(caught, self._timeouts) else AwsAttemptError
        error = error_type(
            operation,
            code=retry_context.get_error_code(),
            status=status,
            throttling=bool(self._throttling.is_throttling_error_from_context(retry_context)),
            retry_after=retry_after,
            cause=caught,
        )
        return _Classified(False, error)

    def __repr__(self) -> str:
        return f"BotocoreRetries({self.policy!r}, attempts={self.attempts})"


def install_retries(
    client: Any,
    policy: RetryPolicy | None = None,
    *,
    clock: SleepingClock | None = None,
) -> BotocoreRetries:
    """Replace ``client``'s retry handling with ``policy``; returns the installed handlers.

    Args:
        client: a botocore or boto3 client (``boto3.client(...)``; for a resource, pass
            ``resource.meta.client``). Created in ``standard`` or ``legacy`` mode; ``adaptive``
            is refused (``ConfigError``), since its client-side rate limiter would still run.
        policy: default :func:`sdk_standard_policy` for the client's service.
        clock: where retries sleep and deadlines are read (default the wall clock).
    """
    meta: Any = getattr(client, "meta", None)
    events = getattr(meta, "events", None)
    if events is None:
        raise ConfigError("client", "must be a botocore client (client.meta.events)", client)
    retries = getattr(meta.config, "retries", None) or {}
    if retries.get("mode") == "adaptive":
        raise ConfigError(
            "client", "uses retry mode 'adaptive'; create it with retries={'mode': 'standard'}"
        )
    service = meta.service_model.service_id.hyphenize()
    if policy is None:
        policy = sdk_standard_policy(service)
    if not isinstance(policy, RetryPolicy):
        raise ConfigError("policy", "must be a stormproof RetryPolicy", policy)
    if clock is None:
        clock = WallClock()
    elif not isinstance(clock, SleepingClock):
        raise ConfigError("clock", "must have now(), sleep() and async_sleep()", clock)
    handlers = BotocoreRetries(policy, clock)
    events.unregister(f"needs-retry.{service}", unique_id=f"retry-config-{service}")
    events.register(
        f"before-call.{service}", handlers.before_call, unique_id=f"stormproof-start-{service}"
    )
    events.register(
        f"needs-retry.{service}", handlers.needs_retry, unique_id=f"stormproof-retry-{service}"
    )
    return handlers
