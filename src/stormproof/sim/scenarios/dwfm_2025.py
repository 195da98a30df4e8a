"""dwfm-2025: EC2's DropletWorkflow Manager lease collapse (us-east-1, 20 October 2025).

Source: the EC2 section of "Summary of the Amazon DynamoDB Service Disruption in the Northern
Virginia (US-EAST-1) Region" (AWS, October 2025; ``shared/seeds/aws-2025-10-dynamodb-us-east-1
.txt``). Time 0 is 11:48 PM PDT on 19 October, when "these DWFM state checks began to fail as
the process depends on DynamoDB and was unable to complete".

The model (:mod:`stormproof.sim.parts.lease`): DWFM hosts, each keeping leases on its droplets
through renewal checks; while the dependency is down (to 2:25 AM, reaching hosts as cached DNS
records expire until 2:40 AM) leases lapse one by one. When it returns every host queues a lease
attempt for each droplet without a lease; attempts time out in the queue, are queued again, and
the stale copies still cost their work: the backlog does not drain by itself (``no_fix``). The
operators' recovery (``as_happened``) throttles incoming work at 4:14 AM and restarts the hosts
one by one, clearing their queues. Launch requests fail with "insufficient capacity" in
proportion to droplets without a lease.

Fixes, each alone and without operator action, all real :mod:`stormproof.policies` objects:
``queue_admission`` (:class:`~stormproof.policies.admission.QueueRate`), ``backoff_budget``
(:class:`~stormproof.policies.retry.RetryPolicy` with full-jitter
:class:`~stormproof.policies.backoff.Exponential` and a
:class:`~stormproof.policies.budget.RatioBudget`), ``drop_expired``
(:class:`~stormproof.policies.deadline.Deadline`-aware serving), ``adaptive_lifo``
(:class:`~stormproof.policies.admission.AdaptiveLifo`), ``bounded_concurrency``
(:class:`~stormproof.policies.bulkhead.Bulkhead`), and ``all_fixes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from stormproof.errors import ConfigError
from stormproof.policies.admission import AdaptiveLifo, CoDel, QueueRate
from stormproof.policies.backoff import Exponential, Jitter, NoBackoff
from stormproof.policies.budget import RatioBudget
from stormproof.policies.bulkhead import Bulkhead
from stormproof.policies.retry import RetryPolicy
from stormproof.sim.kernel import Simulation
from stormproof.sim.parts.lease import DwfmConfig, DwfmFleet, HostControls, recovery_time
from stormproof.sim.scenario import Param, RunResult, Scenario

__all__ = ["Dwfm2025"]

_R = "AWS 2025 report, EC2"

#: Policies that carry each fix.
_ADMISSION = frozenset({"queue_admission", "all_fixes"})
_BACKOFF = frozenset({"backoff_budget", "all_fixes"})
_DROP = frozenset({"drop_expired", "all_fixes"})
_LIFO = frozenset({"adaptive_lifo", "all_fixes"})
_BOUNDED = frozenset({"bounded_concurrency", "all_fixes"})

#: Seconds after 11:48 PM PDT of the report's times.
DNS_RESTORED_S = 9420.0  # 2:25 AM
THROTTLE_S = 15960.0  # 4:14 AM
LEASES_BACK_S = 20400.0  # 5:28 AM
RELAX_S = 41700.0  # 11:23 AM
EC2_NORMAL_S = 50520.0  # 1:50 PM


def hosts_for(params: Mapping[str, float]) -> int:
    """Number of DWFM hosts: ``droplets / droplets_per_host``, at least one."""
    return max(1, int(params["droplets"]) // int(params["droplets_per_host"]))


class Dwfm2025(Scenario):
    """DWFM lease re-establishment collapse after the DynamoDB outage, and its fixes."""

    name = "dwfm-2025"
    description = "DWFM lease queue congestive collapse after DynamoDB returns (AWS, Oct 2025)"
    policies = (
        "no_fix",
        "as_happened",
        "queue_admission",
        "backoff_budget",
        "drop_expired",
        "adaptive_lifo",
        "bounded_concurrency",
        "all_fixes",
    )
    stuck_rule = "leases_established_fraction at the horizon below recovered_fraction"
    series_bucket_s = 60.0
    max_events = 2_000_000
    params = (
        Param(
            "droplets",
            10_000,
            "droplets in the fleet (scale: 1e5 runs in seconds)",
            f"assumed: {_R}: 'due to the large number of droplets' gives no number; a "
            "parameter, default small for speed",
            1,
            integer=True,
        ),
        Param(
            "droplets_per_host",
            1000,
            "droplets each DWFM host manages",
            f"assumed; {_R}: 'Each DWFM manages a set of droplets within each Availability Zone'",
            1,
            integer=True,
        ),
        Param(
            "check_interval_s",
            300,
            "seconds between a droplet's renewal checks",
            f"{_R}: 'each DWFM host has to check in and complete a state check with each droplet "
            "that it manages every few minutes' (assumed: 5 min)",
            1,
        ),
        Param(
            "attempt_timeout_s",
            120,
            "seconds a lease attempt (or a check) may wait before its caller gives up",
            f"assumed; {_R}: 'efforts to establish new droplet leases took long enough that the "
            "work could not be completed before they timed out'",
            1,
        ),
        Param(
            "host_rate",
            8,
            "work units a host serves per second (a check or API item is 1 unit)",
            "assumed, calibrated: renewals and API work use under half of it in normal operation",
            0.001,
        ),
        Param(
            "establish_cost",
            3,
            "work units of one lease establishment",
            "assumed: a new lease costs more than a check of an existing one",
            0.001,
        ),
        Param(
            "lapse_mean_s",
            3600,
            "mean seconds a lease survives while its checks fail",
            f"assumed, calibrated: {_R}: 'Between 11:48 PM ... and 2:24 AM ... leases ... slowly "
            "started to time out'; about 93 % lapsed by 2:25 AM",
            1,
        ),
        Param(
            "slowdown_knee",
            2000,
            "queued items at which a host's processing takes twice as long",
            f"assumed; {_R}: 'Restarting the DWFM hosts cleared out the DWFM queues, reduced "
            "processing times'",
            1,
        ),
        Param(
            "slowdown_cap",
            4,
            "the most a long queue slows processing (factor)",
            "assumed: bounded, so a collapsed host still serves a quarter of its rate",
            1,
        ),
        Param(
            "api_rate",
            0.3,
            "background EC2 API work items per host per second",
            "assumed: small next to renewals",
            0,
        ),
        Param(
            "launch_rate_per_1000",
            0.1,
            "launch requests per second per 1,000 droplets",
            "assumed: enough launches per minute that error minutes are measurable",
            0,
        ),
        Param(
            "outage_end_s",
            DNS_RESTORED_S,
            "seconds after 11:48 PM when the dependency (DynamoDB) returns",
            "AWS 2025 report, DynamoDB: 'By 2:25 AM, all DNS information was restored' "
            "(2 h 37 min)",
            0,
        ),
        Param(
            "dns_ramp_s",
            900,
            "hosts see the dependency back at a uniform time within this many seconds",
            "AWS 2025 report, DynamoDB: 'as cached DNS records expired between 2:25 AM and "
            "2:40 AM'",
            0,
        ),
        Param(
            "throttle_at_s",
            THROTTLE_S,
            "as_happened: incoming work throttled and restarts begin",
            f"{_R}: 'at 4:14 AM engineers throttled incoming work and began selective restarts "
            "of DWFM hosts' (4 h 26 min)",
            0,
        ),
        Param(
            "throttle_host_rate",
            1.0,
            "as_happened: lease and API items per second each host accepts",
            "assumed, calibrated: below a host's spare rate, so restarted queues stay short",
            0.001,
        ),
        Param(
            "throttle_launch_share",
            0.5,
            "as_happened: share of the launch rate let through the request throttle",
            f'assumed; {_R}: \'many requests were still seeing "request limit exceeded" errors '
            "due to the request throttling'",
            0,
            1,
        ),
        Param(
            "restart_window_s",
            3600,
            "as_happened: hosts restarted one by one, evenly over this window",
            f"assumed, calibrated: {_R}: 'By 5:28 AM, DWFM had established leases with all "
            "droplets' (74 min after 4:14 AM)",
            0,
        ),
        Param(
            "restart_downtime_s",
            60,
            "as_happened: seconds a restarting host serves nothing",
            "assumed",
            0,
        ),
        Param(
            "relax_at_s",
            RELAX_S,
            "as_happened: throttles removed",
            f"{_R}: 'at 11:23 AM PDT our engineers began relaxing request throttles' (assumed: "
            "removed at once)",
            0,
        ),
        Param(
            "admission_max_queue",
            300,
            "queue_admission: QueueRate max_queue (items a host lets wait)",
            f"assumed: short enough to serve within the timeout; {_R}: 'rate limit incoming "
            "work based on the size of the waiting queue'",
            1,
            integer=True,
        ),
        Param(
            "admission_soft_queue",
            150,
            "queue_admission: QueueRate soft_queue (rate limit applies above it)",
            "assumed",
            0,
            integer=True,
        ),
        Param(
            "admission_rate",
            1.5,
            "queue_admission: items per second admitted above soft_queue",
            "assumed: about a host's spare rate in lease items",
            0.001,
        ),
        Param(
            "backoff_base_s",
            60,
            "backoff_budget: Exponential base (full jitter, doubling)",
            "assumed: half the attempt timeout",
            0.001,
        ),
        Param("backoff_cap_s", 1800, "backoff_budget: Exponential cap", "assumed", 0.001),
        Param(
            "give_up_wait_s",
            1800,
            "backoff_budget: a droplet whose retry the budget refused starts a new call within "
            "this many seconds (spread evenly)",
            "assumed: the backoff cap; starting over at the next check would keep offering a "
            "host more first attempts than it can serve",
            1,
        ),
        Param(
            "budget_ratio",
            0.2,
            "backoff_budget: RatioBudget ratio (retries per recent lease call)",
            "Finagle's default RetryBudget (20 %)",
            0,
        ),
        Param(
            "budget_min_per_s",
            0.05,
            "backoff_budget: RatioBudget min_retries_per_second per host",
            "assumed: Finagle's 10/s is for a busy RPC client, not one host's lease sweeper",
            0,
        ),
        Param(
            "budget_ttl_s",
            600,
            "backoff_budget: RatioBudget window",
            "assumed: a few attempt timeouts",
            0.001,
        ),
        Param(
            "codel_target_s",
            10,
            "adaptive_lifo: CoDel target sojourn",
            "assumed: RFC 8289's 5 ms scaled to a queue measured in minutes",
            0.001,
        ),
        Param(
            "codel_interval_s",
            120,
            "adaptive_lifo: CoDel interval",
            "assumed: one attempt timeout",
            0.001,
        ),
        Param(
            "concurrency_limit",
            60,
            "bounded_concurrency: Bulkhead max_concurrent lease attempts per host",
            "assumed: what a host serves within the attempt timeout",
            1,
            integer=True,
        ),
        Param("step_s", 20, "model step (s)", "assumed: coarse for speed", 0.1),
        Param(
            "recovered_fraction",
            0.99,
            "recovered once at least this share of droplets has a lease",
            f"assumed; {_R}: 'DWFM had established leases with all droplets'",
            0,
            1,
        ),
        Param(
            "error_minute_threshold",
            0.01,
            "an impact minute has more than this share of launches failing",
            "assumed",
            0,
            1,
        ),
        Param(
            "horizon_s",
            EC2_NORMAL_S,
            "simulated seconds",
            f"{_R}: 'At 1:50 PM, all EC2 APIs and new EC2 instance launches were operating "
            "normally' (14 h 2 min)",
            1,
        ),
    )

    def check(self, params: Mapping[str, float]) -> None:
        """Times inside the horizon, queues and steps consistent."""
        if params["droplets"] < params["droplets_per_host"]:
            raise ConfigError("droplets", "must be >= droplets_per_host", params["droplets"])
        for name in ("outage_end_s", "throttle_at_s", "relax_at_s"):
            if params[name] >= params["horizon_s"]:
                raise ConfigError(name, "must be < horizon_s", params[name])
        if params["throttle_at_s"] < params["outage_end_s"]:
            raise ConfigError("throttle_at_s", "must be >= outage_end_s", params["throttle_at_s"])
        if params["relax_at_s"] < params["throttle_at_s"]:
            raise ConfigError("relax_at_s", "must be >= throttle_at_s", params["relax_at_s"])
        if params["admission_soft_queue"] > params["admission_max_queue"]:
            raise ConfigError(
                "admission_soft_queue",
                "must be <= admission_max_queue",
                params["admission_soft_queue"],
            )
        if params["backoff_cap_s"] < params["backoff_base_s"]:
            raise ConfigError("backoff_cap_s", "must be >= backoff_base_s", params["backoff_cap_s"])
        if params["codel_target_s"] >= params["codel_interval_s"]:
            raise ConfigError(
                "codel_target_s", "must be < codel_interval_s", params["codel_target_s"]
            )
        if params["step_s"] > params["attempt_timeout_s"]:
            raise ConfigError("step_s", "must be <= attempt_timeout_s", params["step_s"])

    def config(self, params: Mapping[str, float]) -> DwfmConfig:
        """Every host's shape for these parameters."""
        hosts = hosts_for(params)
        return DwfmConfig(
            droplets_per_host=int(params["droplets"]) // hosts,
            host_rate=params["host_rate"],
            establish_cost=params["establish_cost"],
            check_interval=params["check_interval_s"],
            attempt_timeout=params["attempt_timeout_s"],
            lapse_mean=params["lapse_mean_s"],
            slowdown_knee=params["slowdown_knee"],
            slowdown_cap=params["slowdown_cap"],
            api_rate=params["api_rate"],
            step=params["step_s"],
        )

    def controls(
        self, sim: Simulation, policy: str, params: Mapping[str, float], host: int
    ) -> HostControls:
        """Host ``host``'s policy objects under ``policy`` (new objects, one set per host)."""
        rng = sim.rng(f"dwfm.retry.{host}")
        if policy in _BACKOFF:
            retry = RetryPolicy(
                max_attempts=None,
                backoff=Exponential(
                    base=params["backoff_base_s"],
                    factor=2.0,
                    cap=params["backoff_cap_s"],
                    jitter=Jitter.FULL,
                ),
                budget=RatioBudget(
                    ratio=params["budget_ratio"],
                    min_retries_per_second=params["budget_min_per_s"],
                    ttl=params["budget_ttl_s"],
                ),
                rng=rng,
            )
        else:
            # The 2025 behaviour: "Additional work was queued to reattempt establishing the
            # droplet lease" -- at once, every time.
            retry = RetryPolicy(max_attempts=None, backoff=NoBackoff(), rng=rng)
        return HostControls(
            retry=retry,
            admission=QueueRate(
                int(params["admission_max_queue"]),
                params["admission_rate"],
                soft_queue=int(params["admission_soft_queue"]),
                # The host asks once a step, so the bucket must hold a step's worth of items.
                burst=max(1.0, params["admission_rate"] * params["step_s"]),
            )
            if policy in _ADMISSION
            else None,
            bulkhead=Bulkhead(int(params["concurrency_limit"])) if policy in _BOUNDED else None,
            lifo=AdaptiveLifo(CoDel(params["codel_target_s"], params["codel_interval_s"]))
            if policy in _LIFO
            else None,
            drop_expired=policy in _DROP,
            give_up_wait=params["give_up_wait_s"] if policy in _BACKOFF else None,
        )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the night once under ``policy``."""
        self.check_policy(policy)
        sim = Simulation(seed, max_events=self.max_events)
        horizon = params["horizon_s"]
        config = self.config(params)
        hosts = hosts_for(params)
        fleet = DwfmFleet(
            sim,
            config,
            hosts,
            lambda host: self.controls(sim, policy, params, host),
            launch_rate=params["launch_rate_per_1000"] * hosts * config.droplets_per_host / 1000,
            horizon=horizon,
        )
        fleet.start()
        # The trigger: the dependency fails everywhere at 11:48 PM and comes back to each host
        # as its cached DNS answer expires.
        for host in range(hosts):
            fleet.dependency(host, False)
        fleet.api_down()
        ramp = sim.rng("dwfm.dependency")
        outage_end = params["outage_end_s"]
        for host in range(hosts):
            sim.at(
                outage_end + ramp.uniform(0.0, params["dns_ramp_s"]), fleet.dependency, host, True
            )
        sim.at(outage_end, fleet.api_back)
        if policy == "as_happened":
            throttle_at = params["throttle_at_s"]
            sim.at(
                throttle_at,
                fleet.throttle,
                params["throttle_host_rate"],
                params["throttle_launch_share"] * fleet.launch_rate,
            )
            spacing = params["restart_window_s"] / hosts
            for host in range(hosts):
                sim.at(
                    throttle_at + host * spacing, fleet.restart, host, params["restart_downtime_s"]
                )
            sim.at(params["relax_at_s"], fleet.relax)
        sim.run(until=horizon)
        return self._result(params, policy, seed, sim, fleet, series)

    def _result(
        self,
        params: Mapping[str, float],
        policy: str,
        seed: int,
        sim: Simulation,
        fleet: DwfmFleet,
        series: bool,
    ) -> RunResult:
        horizon = params["horizon_s"]
        outage_end = params["outage_end_s"]
        minutes = math.ceil(horizon / 60.0)
        metrics = fleet.metrics
        launches = metrics.series("launches", minutes)
        failed = [
            a + b + c
            for a, b, c in zip(
                metrics.series("insufficient_capacity", minutes),
                metrics.series("request_limit", minutes),
                metrics.series("unavailable", minutes),
                strict=True,
            )
        ]
        threshold = params["error_minute_threshold"]
        impact = sum(1 for n, f in zip(launches, failed, strict=True) if n and f / n > threshold)
        healthy = params["recovered_fraction"]
        recovery = recovery_time(fleet.history, outage_end, healthy)
        leased_end = fleet.leased / fleet.droplets
        established = fleet.total("established")
        attempts = fleet.total("attempts")
        useful = fleet.total("useful_units")
        wasted = fleet.total("wasted_units")
        after = [fraction for time, fraction, _ in fleet.history if time >= outage_end]
        total_launches = metrics.total("launches")
        result_metrics = {
            "time_to_recover_s": recovery,
            "recovered": 0.0 if math.isnan(recovery) else 1.0,
            "impact_minutes": float(impact),
            "leases_established_fraction": leased_end,
            "min_leases_fraction": min(after) if after else leased_end,
            "amplification": attempts / established if established else math.nan,
            "wasted_work_fraction": wasted / (useful + wasted) if useful + wasted else 0.0,
            "insufficient_capacity_errors": metrics.total("insufficient_capacity"),
            "request_limit_errors": metrics.total("request_limit"),
            "launch_error_fraction": (sum(failed) / total_launches if total_launches else 0.0),
            "lease_attempts": attempts,
            "lease_timeouts": fleet.total("timeouts"),
            "lease_give_ups": fleet.total("give_ups"),
            "peak_queue_items": float(max(host.peak_length for host in fleet.hosts)),
        }
        series_out: dict[str, list[float]] = {}
        if series:
            series_out = {
                "leased_fraction": fleet.leased_series(60.0, minutes),
                "queue_items": metrics.series("queue_items", minutes),
                "launches": launches,
                "launch_errors": failed,
                "insufficient_capacity": metrics.series("insufficient_capacity", minutes),
                "request_limit": metrics.series("request_limit", minutes),
            }
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=leased_end < healthy,
            metrics=result_metrics,
            trace_hash=sim.trace_hash(),
            series=series_out,
        )
