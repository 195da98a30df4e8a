"""A health-checked, DNS-routed load-balancer fleet whose checker can itself be overloaded.

The October 2025 NLB failure, as a reusable part. Several multi-AZ load balancers share one
health-check subsystem. Nodes are replaced by new instances now and then; a new instance's network
state takes a while to propagate, and until it has, its checks fail *intermittently* although the
node is healthy. A failed check removes the node from DNS, the next good one returns it: a flap.

The checker has a fixed capacity in work units per second. A check costs one unit, every change
of a node's check result (failing to passing or back) costs ``change_cost`` more, and every DNS
change ``dns_change_cost``; so flapping adds load, and once the load exceeds the capacity, checks
fall behind. A result older than ``stale_after_s`` no longer vouches for a node,
and an Availability Zone whose share of nodes with fresh passing results drops below
``az_failover_below`` is failed over: all of its nodes leave DNS at once -- capacity removed by
the checks, not by the nodes. Traffic is fluid: each balancer carries a constant demand, and the
part of it above the capacity left in DNS fails as connection errors.

Protections, each the real policy object on sim time:

* ``velocity`` -- one :class:`~stormproof.policies.velocity.VelocityLimiter` per balancer: every
  removal (node or zone) is booked with it, and removals beyond its allowance are not made;
* ``panic`` -- one :class:`~stormproof.policies.velocity.PanicThreshold` per balancer: when too
  few of its nodes are in DNS, DNS answers with all of them;
* ``failover_enabled = False`` -- the operators' switch: no automatic removal at all.

DNS itself fails open as Route 53 does: when no record of a balancer is healthy, all are served.
The part is stepped every ``tick_s`` seconds (a fluid model of traffic and checker work); node
replacements are kernel events, so the trace hash follows the seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies.velocity import PanicThreshold, VelocityLimiter
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters

__all__ = ["HealthCheckConfig", "HealthCheckedFleet", "ReadyTime"]

#: ``ready_at(launched_at, rng)`` -> when a node launched at ``launched_at`` has its network
#: state fully propagated (checks on it fail intermittently before that).
ReadyTime = Callable[[float, random.Random], float]


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """Shape of the fleet and of its health-check subsystem.

    Args:
        balancers: load balancers sharing the checker.
        zones: Availability Zones each balancer spans.
        nodes_per_zone: nodes of one balancer in one zone (equal capacity each).
        utilization: each balancer's demand as a share of its full capacity.
        check_interval_s: seconds between two checks of a node when the checker keeps up.
        checker_rate: checker work units per second (one check is one unit).
        change_cost: extra units per change of a node's check result (a flap's each half).
        dns_change_cost: extra units per DNS change (a node removed or returned).
        unhealthy_after: consecutive failed checks that mark a node failing.
        healthy_after: consecutive good checks that mark it passing again.
        fail_prob: chance a check of a node whose network state has not propagated fails.
        stale_after_s: a result older than this does not count as passing for zone failover.
        az_failover_below: a zone fails over while fewer than this share of its nodes pass
            with a fresh result, and comes back once at least this share do.
        tick_s: the step of the fluid model.
    """

    balancers: int = 4
    zones: int = 3
    nodes_per_zone: int = 4
    utilization: float = 0.6
    check_interval_s: float = 10.0
    checker_rate: float = 8.0
    change_cost: float = 40.0
    dns_change_cost: float = 0.0
    unhealthy_after: int = 1
    healthy_after: int = 1
    fail_prob: float = 0.5
    stale_after_s: float = 30.0
    az_failover_below: float = 0.5
    tick_s: float = 10.0

    def __post_init__(self) -> None:
        int_at_least("balancers", self.balancers, 1)
        int_at_least("zones", self.zones, 1)
        int_at_least("nodes_per_zone", self.nodes_per_zone, 1)
        finite_above("utilization", self.utilization, 0.0)
        finite_above("check_interval_s", self.check_interval_s, 0.0)
        finite_above("checker_rate", self.checker_rate, 0.0)
        finite_at_least("change_cost", self.change_cost, 0.0)
        finite_at_least("dns_change_cost", self.dns_change_cost, 0.0)
        int_at_least("unhealthy_after", self.unhealthy_after, 1)
        int_at_least("healthy_after", self.healthy_after, 1)
        finite_at_least("fail_prob", self.fail_prob, 0.0)
        if self.fail_prob > 1.0:
            raise ConfigError("fail_prob", "must be within [0, 1]", self.fail_prob)
        finite_above("stale_after_s", self.stale_after_s, 0.0)
        finite_at_least("az_failover_below", self.az_failover_below, 0.0)
        if self.az_failover_below > 1.0:
            raise ConfigError("az_failover_below", "must be within [0, 1]", self.az_failover_below)
        finite_above("tick_s", self.tick_s, 0.0)

    @property
    def nodes(self) -> int:
        """Nodes in the whole fleet."""
        return self.balancers * self.zones * self.nodes_per_zone


class HealthCheckedFleet:
    """The fleet, its checker and DNS, stepped on the kernel (see the module docstring).

    Args:
        sim: the simulation.
        config: the fleet's shape.
        ready_at: when a replaced node's network state has propagated (see :data:`ReadyTime`).
        launch_rate: node replacements per second over the whole fleet (Poisson), while
            ``launches_until`` has not passed.
        launches_until: no replacements after this time.
        velocity: makes one limiter per balancer, or ``None`` for no velocity control.
        panic: makes one panic threshold per balancer, or ``None``.
        metrics: per-bucket counters to record into (``demand``, ``errors``, ``flaps``,
            ``changes``, ``az_failovers``; gauges ``removed_fraction``, ``check_delay_s``,
            ``unpropagated``, ``zones_failed_over``).
        horizon: no events are scheduled past it.

    Streams: ``nlb.launch`` (when and which node is replaced), ``nlb.propagation`` (its ready
    time) and ``nlb.probe`` (check outcomes). The first two do not depend on any policy.
    """

    def __init__(
        self,
        sim: Simulation,
        config: HealthCheckConfig,
        *,
        ready_at: ReadyTime,
        launch_rate: float,
        launches_until: float = math.inf,
        velocity: Callable[[], VelocityLimiter] | None = None,
        panic: Callable[[], PanicThreshold] | None = None,
        metrics: BucketCounters,
        horizon: float,
    ) -> None:
        if not isinstance(config, HealthCheckConfig):
            raise ConfigError("config", "must be a HealthCheckConfig", config)
        if not callable(ready_at):
            raise ConfigError("ready_at", "must be callable(launched_at, rng) -> time", ready_at)
        finite_at_least("launch_rate", launch_rate, 0.0)
        finite_above("horizon", horizon, 0.0)
        self.sim = sim
        self.config = config
        self.ready_at_fn = ready_at
        self.launch_rate = float(launch_rate)
        self.launches_until = float(launches_until)
        self.metrics = metrics
        self.horizon = float(horizon)
        n = config.nodes
        per_balancer = config.zones * config.nodes_per_zone
        self.per_balancer = per_balancer
        #: Balancer and zone of each node; nodes of one balancer are contiguous, zone by zone.
        self.balancer_of = [i // per_balancer for i in range(n)]
        self.zone_of = [(i % per_balancer) // config.nodes_per_zone for i in range(n)]
        self.ready_at = [-math.inf] * n
        self.passing = [True] * n
        self.streak = [0] * n
        self.last_checked = [0.0] * n
        self.in_dns = [True] * n
        self.routed = [True] * n
        self.zone_failed = [[False] * config.zones for _ in range(config.balancers)]
        self.velocity = [velocity() for _ in range(config.balancers)] if velocity else None
        self.panic = [panic() for _ in range(config.balancers)] if panic else None
        self.failover_enabled = True
        self._pending_work = 0.0
        self._budget = 0.0
        self._cursor = 0
        self._launch_rng = sim.rng("nlb.launch")
        self._ready_rng = sim.rng("nlb.propagation")
        self._probe_rng = sim.rng("nlb.probe")
        self.flaps = 0
        self.changes = 0
        self.az_failovers = 0
        self.launches = 0
        self.peak_check_delay = 0.0
        self.peak_removed_fraction = 0.0
        self.removed_node_seconds = 0.0

    # -- driving --------------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first step and the first node replacement."""
        self.sim.schedule(self.config.tick_s, self._tick)
        self._schedule_launch()

    def set_failover(self, enabled: bool) -> None:
        """The operators' switch for automatic health-check failover (applied at the next step)."""
        self.failover_enabled = bool(enabled)

    def _schedule_launch(self) -> None:
        if self.launch_rate <= 0.0:
            return
        delay = self._launch_rng.expovariate(self.launch_rate)
        when = self.sim.now() + delay
        if when < min(self.horizon, self.launches_until):
            self.sim.schedule(delay, self._launch)

    def _launch(self) -> None:
        """A node is replaced by a new instance, brought into service at once."""
        now = self.sim.now()
        node = self._launch_rng.randrange(self.config.nodes)
        self.ready_at[node] = self.ready_at_fn(now, self._ready_rng)
        self.launches += 1
        self._schedule_launch()

    # -- one step -------------------------------------------------------------------------------

    def _tick(self) -> None:
        now = self.sim.now()
        config = self.config
        self._check(now)
        self._route(now)
        self._record(now)
        if now + config.tick_s <= self.horizon:
            self.sim.schedule(config.tick_s, self._tick)

    def _check(self, now: float) -> None:
        """Spend this step's checker budget: DNS-change work first, then due checks."""
        config = self.config
        budget = self._budget + config.checker_rate * config.tick_s
        pending = self._pending_work
        paid = min(budget, pending)
        self._pending_work = pending - paid
        budget -= paid
        n = config.nodes
        interval = config.check_interval_s
        last = self.last_checked
        ready = self.ready_at
        cursor = self._cursor
        fail_prob = config.fail_prob
        probe = self._probe_rng
        for _ in range(n):
            if budget < 1.0:
                break
            node = cursor
            cursor = cursor + 1 if cursor + 1 < n else 0
            if now - last[node] < interval:
                continue
            budget -= 1.0
            last[node] = now
            # One draw per check of an unpropagated node only: propagated nodes always pass.
            ok = not (now < ready[node] and probe.random() < fail_prob)
            self._record_result(node, ok)
        self._cursor = cursor
        # Unspent budget is not banked beyond a fraction of a check: an idle checker does not
        # save up for a later burst.
        self._budget = min(budget, 1.0)

    def _record_result(self, node: int, ok: bool) -> None:
        passing = self.passing[node]
        if ok == passing:
            self.streak[node] = 0
            return
        self.streak[node] += 1
        if passing and self.streak[node] >= self.config.unhealthy_after:
            self.passing[node] = False
            self.streak[node] = 0
            self.flaps += 1
            self.metrics.add("flaps", self.sim.now())
            self._pending_work += self.config.change_cost
        elif not passing and self.streak[node] >= self.config.healthy_after:
            self.passing[node] = True
            self.streak[node] = 0
            self._pending_work += self.config.change_cost

    def _route(self, now: float) -> None:
        """Zone failover, node removal (within velocity), panic and fail-open, per balancer."""
        config = self.config
        per = self.per_balancer
        npz = config.nodes_per_zone
        stale = config.stale_after_s
        below = config.az_failover_below
        enabled = self.failover_enabled
        changes = 0
        for b in range(config.balancers):
            first = b * per
            nodes = range(first, first + per)
            zone_failed = self.zone_failed[b]
            if enabled:
                for z in range(config.zones):
                    start = first + z * npz
                    fresh = sum(
                        1
                        for i in range(start, start + npz)
                        if self.passing[i] and now - self.last_checked[i] <= stale
                    )
                    failed = fresh < below * npz
                    if failed != zone_failed[z]:
                        zone_failed[z] = failed
                        if failed:
                            self.az_failovers += 1
                            self.metrics.add("az_failovers", now)
                desired = [self.passing[i] and not zone_failed[self.zone_of[i]] for i in nodes]
            else:
                for z in range(config.zones):
                    zone_failed[z] = False
                desired = [True] * per
            in_dns = self.in_dns
            removals = [k for k in range(per) if in_dns[first + k] and not desired[k]]
            allowed = len(removals)
            if removals and self.velocity is not None:
                allowed = self.velocity[b].request(now, len(removals), per)
            for k in removals[:allowed]:
                in_dns[first + k] = False
                changes += 1
            for k in range(per):
                if desired[k] and not in_dns[first + k]:
                    in_dns[first + k] = True
                    changes += 1
            health = in_dns[first : first + per]
            if self.panic is not None:
                health = self.panic[b].effective(health)
            if not any(health):
                health = [True] * per  # Route 53 answers with every record when none is healthy
            self.routed[first : first + per] = health
        if changes:
            self.changes += changes
            self.metrics.add("changes", now, float(changes))
            self._pending_work += changes * config.dns_change_cost

    def _record(self, now: float) -> None:
        config = self.config
        per = self.per_balancer
        tick = config.tick_s
        demand_per = config.utilization * per
        demand = 0.0
        errors = 0.0
        removed = 0
        for b in range(config.balancers):
            first = b * per
            routed = sum(self.routed[first : first + per])
            removed += per - routed
            demand += demand_per
            if routed < demand_per:
                errors += demand_per - routed
        # The step covers (now - tick, now]; book it in the bucket of its start.
        at = now - tick
        self.metrics.add("demand", at, demand * tick)
        self.metrics.add("errors", at, errors * tick)
        fraction = removed / config.nodes
        self.removed_node_seconds += removed * tick
        self.peak_removed_fraction = max(self.peak_removed_fraction, fraction)
        self.metrics.peak("removed_fraction", at, fraction)
        oldest = max(now - t for t in self.last_checked)
        delay = max(0.0, oldest - config.check_interval_s)
        self.peak_check_delay = max(self.peak_check_delay, delay)
        self.metrics.peak("check_delay_s", at, delay)
        unpropagated = sum(1 for t in self.ready_at if t > now)
        self.metrics.peak("unpropagated", at, float(unpropagated))
        failed_zones = sum(sum(zones) for zones in self.zone_failed)
        self.metrics.peak("zones_failed_over", at, float(failed_zones))

    # -- read-outs ------------------------------------------------------------------------------

    def routed_fraction(self) -> float:
        """Share of the fleet's nodes DNS currently answers with."""
        return sum(self.routed) / self.config.nodes

    def velocity_refused(self) -> int:
        """Removals the velocity limiters refused, over all balancers."""
        return sum(limiter.refused for limiter in self.velocity) if self.velocity else 0

    def panics(self) -> int:
        """Steps in which some balancer's panic threshold routed to every node."""
        return sum(threshold.panics for threshold in self.panic) if self.panic else 0
