"""Sans-IO resilience policies: each is asked a question with the current time and answers.

One concept per module: :mod:`~stormproof.policies.backoff`, :mod:`~stormproof.policies.retry`,
:mod:`~stormproof.policies.budget`, :mod:`~stormproof.policies.deadline`,
:mod:`~stormproof.policies.presets`.
"""

from stormproof.policies.backoff import (
    Backoff,
    Constant,
    Decorrelated,
    Exponential,
    Jitter,
    Linear,
    NoBackoff,
)
from stormproof.policies.budget import (
    AdaptiveTokenBucket,
    AwsRetryQuota,
    GrpcRetryThrottle,
    RatioBudget,
    RetryBudget,
)
from stormproof.policies.deadline import Deadline, Timeouts, current_deadline, deadline_scope
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter, RetryCall, RetryPolicy

__all__ = [
    "AdaptiveTokenBucket",
    "AwsRetryQuota",
    "Backoff",
    "Constant",
    "Deadline",
    "Decorrelated",
    "Exponential",
    "GiveUp",
    "GiveUpReason",
    "GrpcRetryThrottle",
    "Jitter",
    "Linear",
    "NoBackoff",
    "RatioBudget",
    "RetryAfter",
    "RetryBudget",
    "RetryCall",
    "RetryPolicy",
    "Timeouts",
    "current_deadline",
    "deadline_scope",
]
