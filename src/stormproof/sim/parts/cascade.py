"""Links between parts: how one subsystem's state becomes another's input in a chained model.

The October 2025 us-east-1 event went from one subsystem to the next. Two of its links need a
small adapter between existing parts, kept here so the parts stay unaware of each other:

* :class:`PropagationReadyTime` -- Network Manager to NLB. A node the NLB fleet brings into
  service needs its network state propagated (the report: NLB "bringing new EC2 instances into
  service while the network state for those instances had not yet fully propagated"). The
  :class:`~stormproof.sim.parts.health_check.HealthCheckedFleet` asks for that time as a
  ``ready_at(launched_at, rng)`` callable; this one answers from the
  :class:`~stormproof.sim.parts.propagation.PropagationManager`'s working set at launch time.
* :class:`ImpairedCapacity` -- NLB (and EC2 launches) to Lambda. The report: "NLB health check
  failures triggered instance terminations leaving a subset of Lambda internal systems
  under-scaled", and capacity came back once EC2 launches worked again. The
  :class:`~stormproof.sim.parts.worker_fleet.WorkerFleet` takes its capacity as a
  ``capacity(now)`` callable; this one loses capacity while a condition holds and regains it
  while another does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from stormproof._validate import finite_above, finite_at_least
from stormproof.errors import ConfigError
from stormproof.sim.parts.propagation import PropagationManager

__all__ = ["ImpairedCapacity", "PropagationReadyTime", "drain_time"]


def drain_time(items: float, rate: float, knee: float, exponent: float) -> float:
    """Seconds a :class:`PropagationManager` needs to work off ``items`` with no new work.

    Throughput at working set ``w`` is ``rate / (1 + (w / knee) ** exponent)``, so each item
    costs ``(1 + (w / knee) ** exponent) / rate`` seconds and the whole set
    ``(W + W ** (e + 1) / ((e + 1) * knee ** e)) / rate``.
    """
    if items <= 0.0:
        return 0.0
    growth: float = items ** (exponent + 1.0) / ((exponent + 1.0) * knee**exponent)
    return (items + growth) / rate


class PropagationReadyTime:
    """``ready_at(launched_at, rng)`` for a node whose state Network Manager must propagate.

    The working set is served first in, first out, so a propagation entering it now waits for
    everything already in it: :func:`drain_time` of the current working set (a lower bound --
    work arriving behind it also slows the service). To that an exponential delay of mean
    ``normal`` is added (one draw from ``rng`` per call), the propagation time of a quiet system.

    Args:
        manager: the Network Manager whose working set the node joins.
        normal: mean propagation delay with an empty working set (seconds).
    """

    __slots__ = ("manager", "normal")

    def __init__(self, manager: PropagationManager, normal: float) -> None:
        if not isinstance(manager, PropagationManager):
            raise ConfigError("manager", "must be a PropagationManager", manager)
        finite_at_least("normal", normal, 0.0)
        self.manager = manager
        self.normal = float(normal)

    def wait(self) -> float:
        """Seconds a propagation entering the working set now waits before it is done."""
        manager = self.manager
        return drain_time(float(manager.working_set), manager.rate, manager.knee, manager.exponent)

    def __call__(self, launched_at: float, rng: random.Random) -> float:
        """When a node launched at ``launched_at`` has its network state."""
        return launched_at + self.wait() + rng.expovariate(1.0) * self.normal


class ImpairedCapacity:
    """``capacity(now)`` that falls while ``losing(now)`` holds and recovers while ``restoring``.

    Capacity is ``full * (1 - lost * down)``: ``down`` rises from 0 to 1 at ``1 / loss_s`` per
    second while ``losing(now)`` is true (instances terminated), falls back at ``1 / restore_s``
    per second while ``restoring(now)`` is true and ``losing`` is not (replacements launched and
    connected), and stays put otherwise. Calls must come in non-decreasing time order (a fleet
    asks once per step); the conditions are sampled at each call and held since the last one.

    Attributes:
        first_loss_at: when capacity first fell (``nan`` while it never has).
        restored_at: when capacity was last back to full after a loss (``nan`` if never).
    """

    __slots__ = (
        "_down",
        "_last",
        "first_loss_at",
        "full",
        "losing",
        "loss_s",
        "lost",
        "restore_s",
        "restored_at",
        "restoring",
    )

    def __init__(
        self,
        full: float,
        lost: float,
        *,
        loss_s: float,
        restore_s: float,
        losing: Callable[[float], bool],
        restoring: Callable[[float], bool],
        start: float = 0.0,
    ) -> None:
        finite_above("full", full, 0.0)
        finite_at_least("lost", lost, 0.0)
        if lost > 1.0:
            raise ConfigError("lost", "must be within [0, 1]", lost)
        finite_above("loss_s", loss_s, 0.0)
        finite_above("restore_s", restore_s, 0.0)
        if not callable(losing) or not callable(restoring):
            raise ConfigError("losing", "losing and restoring must be callable(now) -> bool")
        self.full = float(full)
        self.lost = float(lost)
        self.loss_s = float(loss_s)
        self.restore_s = float(restore_s)
        self.losing = losing
        self.restoring = restoring
        self._down = 0.0
        self._last = float(start)
        self.first_loss_at = math.nan
        self.restored_at = math.nan

    @property
    def down(self) -> float:
        """How far down capacity is, 0 (full) to 1 (``lost`` of it gone)."""
        return self._down

    def __call__(self, now: float) -> float:
        """Capacity at ``now`` (invocations per second, or whatever unit ``full`` is in)."""
        elapsed = now - self._last
        if elapsed < 0.0:
            raise ConfigError("now", "must not go back in time", now)
        self._last = now
        if elapsed > 0.0:
            if self.losing(now):
                if self._down == 0.0 and math.isnan(self.first_loss_at):
                    self.first_loss_at = now
                self._down = min(1.0, self._down + elapsed / self.loss_s)
            elif self._down > 0.0 and self.restoring(now):
                self._down = max(0.0, self._down - elapsed / self.restore_s)
                if self._down == 0.0:
                    self.restored_at = now
        return self.full * (1.0 - self.lost * self._down)
