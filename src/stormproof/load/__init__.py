"""Burst load testing: seeded open-model shapes, a runner for HTTP targets, per-burst recovery.

* :mod:`.shapes` -- :class:`Steady`, :class:`Ramp`, :class:`Spike`, :class:`Bursts` (random
  idle gaps), :class:`Replay`; each gives a :class:`RatePlan` for a duration and a seed;
* :mod:`.distributions` -- bounded distributions for burst lengths, rates and gaps;
* :mod:`.traffic` -- what each arrival sends (duplicates and invalid events mixed in);
* :mod:`.runner` and :mod:`.session` -- the httpx runner and :func:`load_test` (``load`` extra);
* :mod:`.metrics` -- per-request records, the baseline, per-burst metrics, time to recover;
* :mod:`.report` -- JSON and HTML reports; :mod:`.export` -- Locust and k6 stage lists;
* :mod:`.simulate` -- the same shapes as the simulator's open-loop arrivals.

Importing this package needs only the standard library; httpx is imported when a run starts.
"""

from stormproof.load.distributions import Exponential, Fixed, Uniform, parse_distribution
from stormproof.load.metrics import (
    Baseline,
    BurstMetrics,
    LoadAnalysis,
    RecoveryCriteria,
    RequestRecord,
    analyze,
    outcome,
)
from stormproof.load.shapes import (
    Bursts,
    Ramp,
    RatePlan,
    Replay,
    Shape,
    Spike,
    Steady,
    arrival_times,
)
from stormproof.load.traffic import PlannedRequest, Traffic, plan_requests

__all__ = [
    "Baseline",
    "BurstMetrics",
    "Bursts",
    "Exponential",
    "Fixed",
    "LoadAnalysis",
    "PlannedRequest",
    "Ramp",
    "RatePlan",
    "RecoveryCriteria",
    "Replay",
    "RequestRecord",
    "Shape",
    "Spike",
    "Steady",
    "Traffic",
    "Uniform",
    "analyze",
    "arrival_times",
    "outcome",
    "parse_distribution",
    "plan_requests",
]
