"""Ready-made retry policies that match what users already run, so they can be simulated as-is.

Each preset returns a new :class:`~stormproof.policies.retry.RetryPolicy`; presets that include a
budget create a new budget each time, so share the returned policy (as an SDK shares one quota
per client) rather than calling the preset per request.
"""

from __future__ import annotations

import random
from typing import Literal

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.policies.budget import AwsRetryQuota, RatioBudget
from stormproof.policies.retry import RetryPolicy

__all__ = ["aws_sdk_legacy", "aws_sdk_standard", "default", "step_functions"]


def _rng(seed_or_rng: random.Random | int | None) -> random.Random:
    if isinstance(seed_or_rng, random.Random):
        return seed_or_rng
    return random.Random(seed_or_rng)


def default(rng: random.Random | int | None = None) -> RetryPolicy:
    """stormproof's default: 3 attempts, exponential full-jitter backoff, and a retry budget.

    * 3 total attempts -- the AWS SDKs' standard mode and resilience4j (Polly allows 3 *retries*);
    * backoff from 0.1 s doubling to a 20 s cap with full jitter -- Brooker (2015); the cap is
      the AWS SDKs' ``MAX_BACKOFF``;
    * a :class:`~stormproof.policies.budget.RatioBudget` with Finagle's defaults (retries may add
      20 % to recent traffic, plus 10 retries/s) -- so that in an outage the retries of all
      calls sharing this policy stop multiplying the load.
    """
    return RetryPolicy(
        max_attempts=3,
        backoff=Exponential(base=0.1, factor=2.0, cap=20.0, jitter=Jitter.FULL),
        budget=RatioBudget(),
        rng=_rng(rng),
    )


def _is_throttling_default(error: BaseException) -> bool:
    return bool(getattr(error, "throttling", False))


def aws_sdk_standard(
    version: Literal["2.0", "2026"] = "2.0",
    *,
    max_attempts: int | None = None,
    rng: random.Random | int | None = None,
) -> RetryPolicy:
    """The AWS SDKs' "standard" retry mode (botocore ``botocore/retries/standard.py``).

    ``version="2.0"`` (the SDK default through 2026): 3 total attempts; delay before retry ``n``
    is ``U(0, 1) * min(2 ** (n - 1), 20)`` seconds (full jitter from 1 s, cap 20 s); a shared
    :class:`~stormproof.policies.budget.AwsRetryQuota` of 500 tokens, 5 per retry, 10 per
    timeout retry.

    ``version="2026"`` (the updated behaviour, opt-in with ``AWS_NEW_RETRIES_2026=true``):
    non-throttling errors back off from 50 ms, throttling errors from 1 s, both capped at 20 s
    with full jitter; the quota charges 14 per retry (timeouts included) and 5 per throttling
    retry. An error counts as throttling when it has a true ``throttling`` attribute; pass
    ``is_throttling=`` via :meth:`RetryPolicy.replace` to classify your client's errors.
    (DynamoDB's 2026 defaults -- 4 attempts, 25 ms base -- are left to the caller:
    ``max_attempts=4`` and ``replace(backoff=...)``.)

    ``max_attempts`` overrides the default of 3 (the SDKs' ``max_attempts`` config also counts
    total attempts in standard mode).
    """
    attempts = 3 if max_attempts is None else max_attempts
    int_at_least("max_attempts", attempts, 1)
    if version == "2.0":
        return RetryPolicy(
            max_attempts=attempts,
            backoff=Exponential(base=1.0, factor=2.0, cap=20.0, jitter=Jitter.FULL),
            budget=AwsRetryQuota(),
            rng=_rng(rng),
        )
    if version == "2026":
        return RetryPolicy(
            max_attempts=attempts,
            backoff=Exponential(base=0.05, factor=2.0, cap=20.0, jitter=Jitter.FULL),
            throttling_backoff=Exponential(base=1.0, factor=2.0, cap=20.0, jitter=Jitter.FULL),
            is_throttling=_is_throttling_default,
            budget=AwsRetryQuota.v2026(),
            rng=_rng(rng),
        )
    raise ConfigError("version", 'must be "2.0" or "2026"', version)


def aws_sdk_legacy(
    *, max_attempts: int | None = None, rng: random.Random | int | None = None
) -> RetryPolicy:
    """The AWS SDKs' "legacy" retry mode (botocore ``_retry.json`` and ``retryhandler.py``).

    5 total attempts; delay before retry ``n`` is ``U(0, 1) * 2 ** (n - 1)`` seconds with **no
    cap** and **no retry quota** -- the configuration that lets a fleet of clients keep retrying
    through an outage. (In botocore's user config, legacy ``max_attempts`` counts retries; this
    function's ``max_attempts`` counts total attempts like every stormproof policy.)
    """
    attempts = 5 if max_attempts is None else max_attempts
    int_at_least("max_attempts", attempts, 1)
    return RetryPolicy(
        max_attempts=attempts,
        # Without a cap, the delay of retry n is 2**(n-1) s; the largest finite float is the cap.
        backoff=Exponential(base=1.0, factor=2.0, cap=1.0e300, jitter=Jitter.FULL),
        budget=None,
        rng=_rng(rng),
    )


def step_functions(
    interval: float = 1.0,
    max_attempts: int = 3,
    backoff_rate: float = 2.0,
    max_delay: float | None = None,
    jitter: Literal["NONE", "FULL"] = "NONE",
    *,
    rng: random.Random | int | None = None,
) -> RetryPolicy:
    """An Amazon States Language ``Retrier`` (Step Functions ``Retry`` field).

    Arguments use the States Language meanings and defaults: ``IntervalSeconds`` (1),
    ``MaxAttempts`` (3) -- which counts **retries**, so the policy makes ``max_attempts + 1``
    attempts in total and ``0`` means never retry -- ``BackoffRate`` (2.0, >= 1),
    ``MaxDelaySeconds`` (none) and ``JitterStrategy`` (``NONE`` or ``FULL``).

    The delay before retry ``k`` is ``min(interval * backoff_rate ** (k - 1), max_delay)``;
    with ``FULL`` jitter it is drawn from ``U(0, that)``.
    """
    finite_above("interval", interval, 0.0)
    int_at_least("max_attempts", max_attempts, 0)
    finite_at_least("backoff_rate", backoff_rate, 1.0)
    if max_delay is not None:
        finite_above("max_delay", max_delay, 0.0)
    if jitter not in ("NONE", "FULL"):
        raise ConfigError("jitter", 'must be "NONE" or "FULL" (JitterStrategy)', jitter)
    # No MaxDelaySeconds means no cap; the largest sensible float stands in for infinity.
    cap = 1.0e300 if max_delay is None else max_delay
    return RetryPolicy(
        max_attempts=max_attempts + 1,
        backoff=Exponential(
            base=min(interval, cap),
            factor=backoff_rate,
            cap=cap,
            jitter=Jitter.FULL if jitter == "FULL" else Jitter.NONE,
        ),
        rng=_rng(rng),
    )
