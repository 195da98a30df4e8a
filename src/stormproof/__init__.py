"""stormproof: resilience policies that hold up in a retry storm, and the proof that they do.

The names most users need are here; everything else is reachable by module:

* :func:`retry` -- decorate a sync or async function;
* :class:`RetryPolicy`, :mod:`stormproof.policies` -- sans-IO policies and presets;
* :class:`Retrying`, :class:`AsyncRetrying` -- reusable drivers (call, decorator, block form);
* :class:`Deadline`, :func:`deadline_scope`, :func:`current_deadline` -- deadline propagation;
* :class:`WallClock`, :class:`ManualClock` -- clocks;
* :class:`StormproofError` and its subclasses.
"""

from stormproof._version import __version__
from stormproof.clock import Clock, ManualClock, WallClock
from stormproof.errors import ConfigError, DeadlineExceeded, RetryError, StormproofError
from stormproof.policies.deadline import Deadline, current_deadline, deadline_scope
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter, RetryPolicy
from stormproof.run import AsyncRetrying, RetryEvent, Retrying
from stormproof.run.decorate import retry

__all__ = [
    "AsyncRetrying",
    "Clock",
    "ConfigError",
    "Deadline",
    "DeadlineExceeded",
    "GiveUp",
    "GiveUpReason",
    "ManualClock",
    "RetryAfter",
    "RetryError",
    "RetryEvent",
    "RetryPolicy",
    "Retrying",
    "StormproofError",
    "WallClock",
    "__version__",
    "current_deadline",
    "deadline_scope",
    "retry",
]
