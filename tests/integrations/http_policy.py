"""The policy the httpx, requests and aiohttp tests share (a plain module, not a conftest).

``policy(**changes)`` is an :class:`HttpPolicy` with exact delays (``EXACT``) and a breaker that
no test trips unless it means to (``QUIET``).
"""

from __future__ import annotations

from typing import Any

from stormproof import RetryPolicy
from stormproof.integrations._http import HttpPolicy
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.policies.breaker import BreakerConfig

__all__ = ["EXACT", "QUIET", "policy"]

# Exponential backoff without jitter, so that delays are exact: 1 s, 2 s, 4 s ...
EXACT = RetryPolicy(max_attempts=3, backoff=Exponential(base=1.0, jitter=Jitter.NONE))
# A breaker that no test trips unless it means to.
QUIET = BreakerConfig(window_size=100, minimum_calls=100)


def policy(**changes: Any) -> HttpPolicy:
    """The tests' policy: ``EXACT`` retries, a ``QUIET`` breaker, 0.25 s attempts, ``changes``."""
    return HttpPolicy(retry=EXACT, breaker=QUIET, attempt_timeout=0.25).replace(**changes)
