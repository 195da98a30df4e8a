"""nlb-2025: NLB health-check flapping and automatic AZ DNS failover (us-east-1, 20 Oct 2025).

Replays the NLB section of ``shared/seeds/aws-2025-10-dynamodb-us-east-1.txt``. Time 0 is
5:30 AM PDT, when "some customers experienced increased connection errors on their NLBs".

The model is :class:`~stormproof.sim.parts.health_check.HealthCheckedFleet`: load balancers
whose nodes are replaced by new EC2 instances now and then; a new instance's network state
propagates after a delay drawn from the Network Manager's latency of the time (elevated from
5:30 AM, higher from 6:21 AM, normal again at 10:36 AM); until then its health checks fail
intermittently, so nodes flap in and out of DNS; every DNS change loads the shared checker, which
falls behind; stale results fail whole zones over; demand above the capacity left in DNS fails.

Policies: ``no_fix`` (failover left on, no operator action), ``as_happened`` (automatic failover
disabled at 9:36 AM and re-enabled at 2:09 PM), ``velocity_control`` (a
:class:`~stormproof.policies.velocity.VelocityLimiter` per balancer, the report's announced
fix), ``panic_threshold`` (a :class:`~stormproof.policies.velocity.PanicThreshold` per
balancer) and ``all_fixes`` (both, no operator action). The launches and the propagation delays
come from streams no policy draws from (common random numbers).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from stormproof.errors import ConfigError
from stormproof.policies.velocity import PanicThreshold, VelocityLimiter
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.health_check import HealthCheckConfig, HealthCheckedFleet
from stormproof.sim.scenario import Param, RunResult, Scenario

__all__ = ["Nlb2025", "impact_timeline"]

_R = "seeds/aws-2025-10-dynamodb-us-east-1.txt"
_NLB = f"{_R}, NLB"

_VELOCITY = frozenset({"velocity_control", "all_fixes"})
_PANIC = frozenset({"panic_threshold", "all_fixes"})


def impact_timeline(
    bad_minutes: list[bool], horizon_s: float, hold_s: float
) -> tuple[float, float]:
    """``(impact_minutes, time_to_recover_s)`` from a per-minute "customers impacted" flag.

    ``time_to_recover_s`` is the end of the last impacted minute (seconds from time 0), ``0``
    when no minute was impacted, and NaN when fewer than ``hold_s`` seconds of the horizon
    follow it (the run had not recovered for good when it ended).
    """
    impacted = float(sum(bad_minutes))
    last = max((m for m, bad in enumerate(bad_minutes) if bad), default=None)
    if last is None:
        return impacted, 0.0
    end = (last + 1) * 60.0
    if horizon_s - end < hold_s:
        return impacted, math.nan
    return impacted, end


class Nlb2025(Scenario):
    """NLB health checks flap on unpropagated instances; AZ failover removes capacity."""

    name = "nlb-2025"
    description = "NLB health-check flapping and AZ DNS failover (AWS us-east-1, Oct 2025)"
    policies = ("no_fix", "as_happened", "velocity_control", "panic_threshold", "all_fixes")
    stuck_rule = (
        "connection errors above impact_error_rate in a minute within the last recovery_hold_s "
        "of the horizon (time_to_recover_s is null)"
    )
    series_bucket_s = 60.0
    params = (
        Param(
            "balancers",
            4,
            "multi-AZ load balancers sharing the health-check subsystem",
            f"assumed; {_NLB}: 'a highly scalable, multi-tenant architecture' with 'a separate "
            "health check subsystem that regularly executes health checks against all nodes'",
            1,
            64,
            integer=True,
        ),
        Param(
            "zones",
            3,
            "Availability Zones per balancer",
            f"assumed; {_NLB}: 'For multi-AZ load balancers, this resulted in capacity being "
            "taken out of service'",
            2,
            6,
            integer=True,
        ),
        Param(
            "nodes_per_zone",
            4,
            "nodes (with their targets) per balancer per zone",
            "assumed: small for speed; shares, not counts, drive the model",
            1,
            64,
            integer=True,
        ),
        Param(
            "utilization",
            0.6,
            "each balancer's demand as a share of its full capacity",
            f"assumed; {_NLB}: errors 'if the remaining healthy capacity was insufficient to "
            "carry the application load' -- losing one zone of three leaves 0.67, just above it",
            0.01,
            1,
        ),
        Param(
            "check_interval_s",
            10,
            "seconds between checks of a node when the checker keeps up",
            f"assumed: Route 53 and ELB offer 10 s and 30 s; {_NLB}: 'regularly executes "
            "health checks'",
            1,
        ),
        Param(
            "checker_rate",
            8,
            "checker work units per second (a check is one unit)",
            "assumed: 1.67x the 4.8 checks/s of 48 nodes every 10 s",
            0.01,
        ),
        Param(
            "change_cost",
            40,
            "extra checker units per change of a node's check result (each half of a flap)",
            f"assumed; {_NLB}: 'The alternating health check results increased the load on the "
            "health check subsystem, causing it to degrade'",
            0,
        ),
        Param(
            "dns_change_cost",
            0,
            "extra checker units per DNS change (a node removed or returned)",
            "assumed: 0 -- the report ties the load to the alternating results, not to DNS",
            0,
        ),
        Param(
            "unhealthy_after",
            1,
            "consecutive failed checks that remove a node",
            f"assumed; {_NLB}: 'This caused NLB nodes and backend targets to be removed from DNS'",
            1,
            10,
            integer=True,
        ),
        Param(
            "healthy_after",
            1,
            "consecutive good checks that return it",
            f"{_NLB}: 'only to be returned to service when the next health check succeeded'",
            1,
            10,
            integer=True,
        ),
        Param(
            "fail_prob",
            0.5,
            "chance a check of an unpropagated node fails",
            f"assumed; {_NLB}: 'health checks alternating between failing and healthy'",
            0,
            1,
        ),
        Param(
            "stale_after_s",
            30,
            "a result older than this does not count as passing for zone failover",
            f"assumed: three intervals; {_NLB}: 'resulting in delays in health checks and "
            "triggering automatic AZ DNS failover to occur'",
            1,
        ),
        Param(
            "az_failover_below",
            0.5,
            "a zone fails over while fewer than this share of its nodes pass with fresh results",
            "assumed: half the zone",
            0,
            1,
        ),
        Param(
            "launch_rate_per_h",
            60,
            "node replacements per hour over the fleet (Poisson)",
            f"assumed; {_NLB}: 'the health checking subsystem bringing new EC2 instances into "
            "service while the network state for those instances had not yet fully propagated'",
            0,
        ),
        Param(
            "propagation_early_s",
            300,
            "mean propagation delay of a new instance from 5:30 AM (exponential)",
            f"assumed; {_R}, EC2: 'At 5:28 AM PDT ... Network Manager began propagating updated "
            "network configurations ... a significant backlog'",
            0,
        ),
        Param(
            "propagation_slow_at_s",
            3060,
            "when propagation slows further (s after 5:30 AM)",
            f"{_R}, EC2: 'at 6:21 AM, Network Manager started to experience increased latencies "
            "in network propagation times' (51 min)",
            0,
        ),
        Param(
            "propagation_delay_s",
            1800,
            "mean propagation delay from 6:21 AM (exponential)",
            "assumed: the report gives no latency figure",
            0,
        ),
        Param(
            "propagation_normal_at_s",
            18360,
            "propagation back to normal: every pending instance has its state (s after 5:30 AM)",
            f"{_R}, EC2: 'By 10:36 AM, network configuration propagation times had returned to "
            "normal levels' (5 h 6 min)",
            0,
        ),
        Param(
            "propagation_normal_s",
            5,
            "mean propagation delay when normal",
            "assumed",
            0,
        ),
        Param(
            "disable_failover_at_s",
            14760,
            "as_happened: automatic health-check failover disabled (s after 5:30 AM)",
            f"{_NLB}: 'At 9:36 AM, engineers disabled automatic health check failovers for NLB' "
            "(4 h 6 min)",
            0,
        ),
        Param(
            "reenable_failover_at_s",
            31140,
            "as_happened: automatic failover re-enabled (s after 5:30 AM)",
            f"{_NLB}: 'we re-enabled automatic DNS health check failover at 2:09 PM' (8 h 39 min)",
            0,
        ),
        Param(
            "velocity_window_s",
            900,
            "velocity_control: the window of the removal limit",
            f"assumed; {_R}, closing: 'a velocity control mechanism to limit the capacity a "
            "single NLB can remove when health check failures cause AZ failover'",
            1,
        ),
        Param(
            "velocity_max_fraction",
            0.2,
            "velocity_control: share of a balancer's nodes it may remove per window",
            "assumed: less than one zone of three",
            0.001,
            1,
        ),
        Param(
            "panic_threshold",
            0.5,
            "panic_threshold: below this share of nodes in DNS, DNS answers with all",
            "Envoy's default healthy panic threshold (50 %)",
            0.001,
            1,
        ),
        Param(
            "impact_error_rate",
            0.01,
            "a minute is customer-impacting above this connection error rate",
            "assumed",
            0,
            1,
        ),
        Param(
            "recovery_hold_s",
            1800,
            "recovered only if no impacted minute follows for this long before the horizon",
            "assumed: half an hour",
            0,
        ),
        Param("tick_s", 10, "step of the fluid model (s)", "assumed: one check interval", 1),
        Param(
            "horizon_s",
            36000,
            "simulated seconds (to 3:30 PM)",
            f"assumed: past '2:09 PM' ({_NLB}: 'Between 5:30 AM and 2:09 PM PDT')",
            60,
        ),
    )

    def check(self, params: Mapping[str, float]) -> None:
        """The timeline must be ordered; checks cannot be staler than allowed before a step."""
        if params["propagation_slow_at_s"] > params["propagation_normal_at_s"]:
            raise ConfigError(
                "propagation_slow_at_s",
                "must be <= propagation_normal_at_s",
                params["propagation_slow_at_s"],
            )
        if params["reenable_failover_at_s"] < params["disable_failover_at_s"]:
            raise ConfigError(
                "reenable_failover_at_s",
                "must be >= disable_failover_at_s",
                params["reenable_failover_at_s"],
            )
        if params["tick_s"] > params["check_interval_s"]:
            raise ConfigError("tick_s", "must be <= check_interval_s", params["tick_s"])

    def ready_time(self, params: Mapping[str, float]) -> ReadyFn:
        """When an instance launched at ``t`` has its network state (see the module docstring)."""
        return ReadyFn(
            early=params["propagation_early_s"],
            slow_at=params["propagation_slow_at_s"],
            slow=params["propagation_delay_s"],
            normal_at=params["propagation_normal_at_s"],
            normal=params["propagation_normal_s"],
        )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the NLB timeline once under ``policy``."""
        self.check_policy(policy)
        sim = Simulation(seed, max_events=self.max_events)
        horizon = params["horizon_s"]
        metrics = BucketCounters(60.0)
        config = HealthCheckConfig(
            balancers=int(params["balancers"]),
            zones=int(params["zones"]),
            nodes_per_zone=int(params["nodes_per_zone"]),
            utilization=params["utilization"],
            check_interval_s=params["check_interval_s"],
            checker_rate=params["checker_rate"],
            change_cost=params["change_cost"],
            dns_change_cost=params["dns_change_cost"],
            unhealthy_after=int(params["unhealthy_after"]),
            healthy_after=int(params["healthy_after"]),
            fail_prob=params["fail_prob"],
            stale_after_s=params["stale_after_s"],
            az_failover_below=params["az_failover_below"],
            tick_s=params["tick_s"],
        )
        window = params["velocity_window_s"]
        max_fraction = params["velocity_max_fraction"]
        threshold = params["panic_threshold"]
        fleet = HealthCheckedFleet(
            sim,
            config,
            ready_at=self.ready_time(params),
            launch_rate=params["launch_rate_per_h"] / 3600.0,
            velocity=(lambda: VelocityLimiter(window, max_fraction=max_fraction))
            if policy in _VELOCITY
            else None,
            panic=(lambda: PanicThreshold(threshold)) if policy in _PANIC else None,
            metrics=metrics,
            horizon=horizon,
        )
        fleet.start()
        if policy == "as_happened":
            if params["disable_failover_at_s"] < horizon:
                sim.schedule(params["disable_failover_at_s"], fleet.set_failover, False)
            if params["reenable_failover_at_s"] < horizon:
                sim.schedule(params["reenable_failover_at_s"], fleet.set_failover, True)
        sim.run(until=horizon)

        minutes = math.ceil(horizon / 60.0)
        demand = metrics.series("demand", minutes)
        errors = metrics.series("errors", minutes)
        rate = [e / d if d > 0 else 0.0 for e, d in zip(errors, demand, strict=True)]
        limit = params["impact_error_rate"]
        impact, recover = impact_timeline(
            [r > limit for r in rate], horizon, params["recovery_hold_s"]
        )
        total_demand = sum(demand)
        result_metrics = {
            "time_to_recover_s": recover,
            "recovered": 0.0 if math.isnan(recover) else 1.0,
            "impact_minutes": impact,
            "connection_error_rate": sum(errors) / total_demand if total_demand else 0.0,
            "peak_connection_error_rate": max(rate, default=0.0),
            "peak_capacity_removed_fraction": fleet.peak_removed_fraction,
            "capacity_removed_node_hours": fleet.removed_node_seconds / 3600.0,
            "flaps": float(fleet.flaps),
            "dns_changes": float(fleet.changes),
            "az_failovers": float(fleet.az_failovers),
            "peak_check_delay_s": fleet.peak_check_delay,
            "velocity_refused": float(fleet.velocity_refused()),
            "panics": float(fleet.panics()),
            "launches": float(fleet.launches),
        }
        series_out: dict[str, list[float]] = {}
        if series:
            series_out = {
                "connection_error_rate": rate,
                "removed_fraction": metrics.series("removed_fraction", minutes),
                "check_delay_s": metrics.series("check_delay_s", minutes),
                "flaps": metrics.series("flaps", minutes),
                "dns_changes": metrics.series("changes", minutes),
                "zones_failed_over": metrics.series("zones_failed_over", minutes),
                "unpropagated": metrics.series("unpropagated", minutes),
            }
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=math.isnan(recover),
            metrics=result_metrics,
            trace_hash=sim.trace_hash(),
            series=series_out,
        )


class ReadyFn:
    """Propagation delay by phase, exponential around the phase's mean; all done by normal_at.

    Once propagation is back to normal, the backlog has been worked off: an instance launched
    earlier has its state by ``normal_at`` plus a normal delay at the latest.
    """

    __slots__ = ("early", "normal", "normal_at", "slow", "slow_at")

    def __init__(
        self, *, early: float, slow_at: float, slow: float, normal_at: float, normal: float
    ) -> None:
        self.early = early
        self.slow_at = slow_at
        self.slow = slow
        self.normal_at = normal_at
        self.normal = normal

    def mean_at(self, now: float) -> float:
        """The mean propagation delay for an instance launched at ``now``."""
        if now >= self.normal_at:
            return self.normal
        return self.slow if now >= self.slow_at else self.early

    def __call__(self, now: float, rng: random.Random) -> float:
        """When an instance launched at ``now`` is ready; one draw from ``rng`` always."""
        draw = rng.expovariate(1.0)
        ready = now + draw * self.mean_at(now)
        return min(ready, max(now, self.normal_at) + draw * self.normal)
