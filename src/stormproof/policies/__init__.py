"""Sans-IO resilience policies: each is asked a question with the current time and answers.

One concept per module: :mod:`~stormproof.policies.backoff`, :mod:`~stormproof.policies.retry`,
:mod:`~stormproof.policies.budget`, :mod:`~stormproof.policies.deadline`,
:mod:`~stormproof.policies.presets`, :mod:`~stormproof.policies.breaker`,
:mod:`~stormproof.policies.bulkhead`, :mod:`~stormproof.policies.ratelimit`,
:mod:`~stormproof.policies.admission`, :mod:`~stormproof.policies.concurrency`,
:mod:`~stormproof.policies.velocity`, :mod:`~stormproof.policies.fencing`,
:mod:`~stormproof.policies.pipeline`. The most used names are re-exported here.
"""

from stormproof.policies.admission import (
    AdaptiveLifo,
    AdaptiveThrottle,
    CoDel,
    PriorityShedder,
    QueueLimit,
    QueueRate,
)
from stormproof.policies.backoff import (
    Backoff,
    Constant,
    Decorrelated,
    Exponential,
    Jitter,
    Linear,
    NoBackoff,
)
from stormproof.policies.breaker import BreakerConfig, BreakerOpen, BreakerState, CircuitBreaker
from stormproof.policies.budget import (
    AdaptiveTokenBucket,
    AwsRetryQuota,
    GrpcRetryThrottle,
    RatioBudget,
    RetryBudget,
)
from stormproof.policies.bulkhead import Bulkhead, BulkheadFull, KeyedBulkhead
from stormproof.policies.concurrency import AIMDLimit, GradientLimit, LimitedBulkhead, VegasLimit
from stormproof.policies.deadline import Deadline, Timeouts, current_deadline, deadline_scope
from stormproof.policies.fencing import FencedRegister, GenerationStore, Lease
from stormproof.policies.ratelimit import GCRA, KeyedLimiter, TokenBucket
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter, RetryCall, RetryPolicy
from stormproof.policies.velocity import PanicThreshold, VelocityLimiter

__all__ = [
    "GCRA",
    "AIMDLimit",
    "AdaptiveLifo",
    "AdaptiveThrottle",
    "AdaptiveTokenBucket",
    "AwsRetryQuota",
    "Backoff",
    "BreakerConfig",
    "BreakerOpen",
    "BreakerState",
    "Bulkhead",
    "BulkheadFull",
    "CircuitBreaker",
    "CoDel",
    "Constant",
    "Deadline",
    "Decorrelated",
    "Exponential",
    "FencedRegister",
    "GenerationStore",
    "GiveUp",
    "GiveUpReason",
    "GradientLimit",
    "GrpcRetryThrottle",
    "Jitter",
    "KeyedBulkhead",
    "KeyedLimiter",
    "Lease",
    "LimitedBulkhead",
    "Linear",
    "NoBackoff",
    "PanicThreshold",
    "PriorityShedder",
    "QueueLimit",
    "QueueRate",
    "RatioBudget",
    "RetryAfter",
    "RetryBudget",
    "RetryCall",
    "RetryPolicy",
    "Timeouts",
    "TokenBucket",
    "VegasLimit",
    "VelocityLimiter",
    "current_deadline",
    "deadline_scope",
]
