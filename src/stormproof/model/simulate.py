"""A topology as a runnable :class:`~stormproof.sim.scenario.Scenario`.

:class:`TopologyScenario` builds the services and clients of :mod:`stormproof.model._engine`
from a :class:`~stormproof.model.spec.Topology`, applies its triggers, and measures what the
replays measure: goodput, amplification, wasted work, latency, whether the run stayed stuck and
how long it took to recover. Its policies are ``as_written`` (the clients as the file writes
them) and each of the file's policy sets, so :func:`~stormproof.sim.experiment.run_experiment`
compares them on common random numbers: arrivals, latencies and service times come from
streams named after the component, never after the policy.

Random streams: ``<entry or fleet name>.arrivals``, ``<client>.link.latency``,
``<client>.backoff``, ``service.<name>.service``; clients are named ``entry.<name>``,
``fleet.<name>`` and ``edge.<from>-><to>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from stormproof.errors import ConfigError
from stormproof.model._engine import Client, Service
from stormproof.model._lease import LeaseFleet
from stormproof.model.graph import outgoing
from stormproof.model.load_shape import load_steps, mean_rate
from stormproof.model.spec import (
    PROTECTIONS,
    CapacityLoss,
    ConstantLoad,
    LatencyInjection,
    LoadSpike,
    Outage,
    Partition,
    ServicePatch,
    ServiceSpec,
    Topology,
)
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.arrivals import PiecewisePoisson
from stormproof.sim.scenario import RunResult, Scenario
from stormproof.sim.stats import percentile

__all__ = ["AS_WRITTEN", "TopologyScenario", "with_policy_set"]

#: The policy name of the clients exactly as the file writes them.
AS_WRITTEN = "as_written"


def with_policy_set(topology: Topology, name: str) -> Topology:
    """``topology`` with the clients of policy set ``name`` swapped in."""
    if name == AS_WRITTEN:
        return topology
    for policy_set in topology.policy_sets:
        if policy_set.name == name:
            edges = dict(policy_set.edges)
            entries = dict(policy_set.entries)
            fleets = {**entries, **dict(policy_set.fleets)}
            patches = dict(policy_set.services)
            return replace(
                topology,
                services=tuple(
                    _patched(s, patches[s.name]) if s.name in patches else s
                    for s in topology.services
                ),
                edges=tuple(
                    replace(e, client=edges[e.key]) if e.key in edges else e for e in topology.edges
                ),
                entries=tuple(
                    replace(e, client=entries[e.name]) if e.name in entries else e
                    for e in topology.entries
                ),
                fleets=tuple(
                    replace(f, client=fleets[f.name]) if f.name in fleets else f
                    for f in topology.fleets
                ),
            )
    valid = ", ".join([AS_WRITTEN, *(p.name for p in topology.policy_sets)])
    raise ConfigError("policy", f"{name!r} is not a policy set of {topology.name}; valid: {valid}")


def _patched(service: ServiceSpec, patch: ServicePatch) -> ServiceSpec:
    changes = {
        name: getattr(patch, name) for name in PROTECTIONS if getattr(patch, name) is not None
    }
    # Removing one leaves the field at None: unbounded queue, no admission, no bulkhead.
    changes.update(dict.fromkeys(patch.remove))
    return replace(service, **changes)


class _Outside:
    """Open-loop arrivals from outside the graph (an entry point or a fleet) into a client."""

    def __init__(
        self,
        sim: Simulation,
        name: str,
        client: Client,
        steps: list[tuple[float, float]],
        horizon: float,
    ) -> None:
        self.sim = sim
        self.client = client
        self.arrivals = PiecewisePoisson(steps)
        self.horizon = horizon
        self._rng = sim.rng(f"{name}.arrivals")

    def start(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        at = self.arrivals.next_after(self.sim.now(), self._rng)
        if at < self.horizon:
            self.sim.at(at, self._arrive)

    def _arrive(self) -> None:
        self._schedule()
        self.client.call(_ignore)


def _ignore(ok: bool) -> None:
    """Outside callers count their outcomes in the client's counters; nothing else to do."""


class TopologyScenario(Scenario):
    """Simulate ``topology`` under the triggers named in ``triggers`` (default: all of them).

    Its policies are :data:`AS_WRITTEN` and the topology's policy sets; it has no tunable
    parameters (edit the file instead).
    """

    name = "topology"
    description = "A service graph from a topology file"
    params = ()
    policies = ()
    stuck_rule = (
        "goodput of the entry points and fleets over [stuck.late_start, horizon) below "
        "stuck.goodput_fraction of the load they offer then"
    )

    def __init__(self, topology: Topology, triggers: Sequence[str] | None = None) -> None:
        names = [trigger.name for trigger in topology.triggers]
        if triggers is not None:
            for trigger in triggers:
                if trigger not in names:
                    raise ConfigError(
                        "trigger", f"{trigger!r} is unknown; valid: {', '.join(names) or 'none'}"
                    )
            kept = tuple(t for t in topology.triggers if t.name in triggers)
            topology = replace(topology, triggers=kept)
        self.topology = topology

    @property
    def policy_names(self) -> tuple[str, ...]:
        """``as_written`` followed by the policy sets, in file order."""
        return (AS_WRITTEN, *(p.name for p in self.topology.policy_sets))

    def check_policy(self, policy: str) -> None:
        """Raise ConfigError listing the valid policy names if ``policy`` is not one."""
        if policy not in self.policy_names:
            raise ConfigError(
                "policy",
                f"{policy!r} is not a policy of {self.topology.name}; valid: "
                + ", ".join(self.policy_names),
            )

    def resolve(self, overrides: Mapping[str, str | float] | None = None) -> dict[str, float]:
        """No parameters: a topology is changed by editing its file."""
        if overrides:
            raise ConfigError(next(iter(overrides)), "topologies take no parameters")
        return {}

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the topology once under ``policy``."""
        self.check_policy(policy)
        topology = with_policy_set(self.topology, policy)
        sim = Simulation(seed, max_events=self.max_events)
        metrics = BucketCounters(1.0)
        horizon = topology.horizon
        services = {spec.name: Service(sim, spec, metrics) for spec in topology.services}
        partitions = _partitions(topology)
        for spec in topology.services:
            services[spec.name].calls = [
                Client(
                    sim,
                    f"edge.{edge.key}",
                    services[edge.target],
                    edge.client,
                    edge.latency,
                    metrics,
                    zone=_single_zone(spec.zones),
                    partitions=partitions.get(edge.key, []) + partitions.get(edge.target, []),
                    for_zone=edge.for_zone,
                )
                for edge in outgoing(topology, spec.name)
            ]
        _apply_service_triggers(topology, services)
        outside: list[tuple[str, Client, list[tuple[float, float]]]] = []
        outside_judged: list[tuple[str, Client, list[tuple[float, float]]]] = []
        for entry in topology.entries:
            spikes = [
                t for t in topology.triggers if isinstance(t, LoadSpike) and t.target == entry.name
            ]
            steps = load_steps(entry.load, horizon, spikes)
            name = f"entry.{entry.name}"
            client = Client(
                sim,
                name,
                services[entry.target],
                entry.client,
                entry.latency,
                metrics,
                zone=entry.zone,
                partitions=partitions.get(entry.target, []),
            )
            outside.append((name, client, steps))
        leases: dict[str, LeaseFleet] = {}
        for fleet in topology.fleets:
            name = f"fleet.{fleet.name}"
            client = Client(
                sim,
                name,
                services[fleet.target],
                fleet.client,
                fleet.latency,
                metrics,
                zone=fleet.zone,
                partitions=partitions.get(fleet.target, []),
            )
            steps = load_steps(ConstantLoad(fleet.rate), horizon)
            if fleet.lease is not None:
                leases[name] = LeaseFleet(sim, name, client, fleet, horizon)
                leases[name].start()
                # Judged against its renewal rate, but driven by its members, not by arrivals.
                outside_judged.append((name, client, steps))
            else:
                outside.append((name, client, steps))
        for name, client, steps in outside:
            _Outside(sim, name, client, steps, horizon).start()
        outside += outside_judged
        sim.run(until=horizon)
        return self._result(topology, policy, seed, sim, metrics, services, outside, leases, series)

    def _result(
        self,
        topology: Topology,
        policy: str,
        seed: int,
        sim: Simulation,
        metrics: BucketCounters,
        services: Mapping[str, Service],
        outside: list[tuple[str, Client, list[tuple[float, float]]]],
        leases: Mapping[str, LeaseFleet],
        series: bool,
    ) -> RunResult:
        horizon = topology.horizon
        rule = topology.stuck_rule()
        late = rule.late_start
        buckets = math.ceil(horizon)
        offered_late = sum(mean_rate(steps, late, horizon) for _, _, steps in outside)
        late_goodput = sum(metrics.rate(f"{n}.successes", late, horizon) for n, _, _ in outside)
        late_requests = sum(metrics.rate(f"{n}.requests", late, horizon) for n, _, _ in outside)
        late_attempts = sum(metrics.rate(f"{n}.attempts", late, horizon) for n, _, _ in outside)
        requests = sum(metrics.total(f"{n}.requests") for n, _, _ in outside)
        latencies = sorted(x for _, client, _ in outside for x in client.latencies)
        useful = sum(metrics.total(s.prefix + "useful_work") for s in services.values())
        wasted = sum(metrics.total(s.prefix + "wasted_work") for s in services.values())
        successes = [0.0] * buckets
        offered = [0.0] * buckets
        for name, _, steps in outside:
            for index, value in enumerate(metrics.series(f"{name}.successes", buckets)):
                successes[index] += value
                offered[index] += mean_rate(steps, index, index + 1)
        trigger_end = max((t.start + t.duration for t in topology.triggers), default=0.0)
        recovery = _recovery_time(successes, offered, trigger_end, rule.goodput_fraction)
        result: dict[str, float] = {
            "late_goodput_per_s": late_goodput,
            "late_offered_per_s": offered_late,
            "late_attempts_per_s": late_attempts,
            "amplification": late_attempts / late_requests if late_requests else math.nan,
            "wasted_work_fraction": wasted / (useful + wasted) if useful + wasted else 0.0,
            "time_to_recover_s": recovery,
            "recovered": 0.0 if math.isnan(recovery) else 1.0,
            "failures": sum(metrics.total(f"{n}.failures") for n, _, _ in outside),
            "latency_p50_s": percentile(latencies, 0.50),
            "latency_p99_s": percentile(latencies, 0.99),
        }
        for name, client, _ in outside:
            result[f"{name}.late_goodput_per_s"] = metrics.rate(f"{name}.successes", late, horizon)
            called = metrics.total(f"{name}.requests")
            result[f"{name}.success_ratio"] = (
                metrics.total(f"{name}.successes") / called if called else math.nan
            )
            result[f"{name}.latency_p99_s"] = percentile(sorted(client.latencies), 0.99)
        for service in services.values():
            p = service.prefix
            s_useful = metrics.total(p + "useful_work")
            s_wasted = metrics.total(p + "wasted_work")
            result[p + "throughput_per_s"] = metrics.total(p + "completed") / horizon
            result[p + "goodput_per_s"] = metrics.total(p + "goodput") / horizon
            result[p + "amplification"] = (
                metrics.total(p + "arrivals") / requests if requests else math.nan
            )
            result[p + "shed"] = metrics.total(p + "shed") + metrics.total(p + "rejected")
            result[p + "wasted_work_fraction"] = (
                s_wasted / (s_useful + s_wasted) if s_useful + s_wasted else 0.0
            )
            result[p + "peak_busy"] = float(service.peak_busy)
            result[p + "peak_queue"] = max(metrics.series(p + "queue"), default=0.0)
        leased: dict[str, list[float]] = {}
        for name, fleet in leases.items():
            leased[name] = fleet.leased_series(buckets)
            size = float(fleet.size)
            result[f"{name}.leased_fraction_end"] = fleet.leased_at(horizon) / size
            result[f"{name}.min_leased_fraction"] = min(leased[name], default=size) / size
            result[f"{name}.reacquired"] = float(fleet.acquired)
            result[f"{name}.time_to_recover_s"] = _recovery_time(
                leased[name], [size] * buckets, trigger_end, 0.99
            )
        kept: dict[str, list[float]] = {}
        if series:
            kept["successes"] = successes
            kept["offered"] = offered
            for service in services.values():
                for counter in ("arrivals", "goodput", "queue"):
                    kept[service.prefix + counter] = metrics.series(
                        service.prefix + counter, buckets
                    )
            for name, values in leased.items():
                kept[f"{name}.leased"] = values
        return RunResult(
            scenario=topology.name,
            policy=policy,
            seed=seed,
            stuck=late_goodput < rule.goodput_fraction * offered_late,
            metrics=result,
            trace_hash=sim.trace_hash(),
            series=kept,
        )


def _single_zone(zones: tuple[str, ...]) -> str | None:
    """The zone a service calls from: its only zone, or ``None`` when it spans several."""
    return zones[0] if len(zones) == 1 else None


def _partitions(topology: Topology) -> dict[str, list[tuple[float, float]]]:
    """Partition windows by target: an edge key or a service name."""
    found: dict[str, list[tuple[float, float]]] = {}
    for trigger in topology.triggers:
        if isinstance(trigger, Partition):
            window = (trigger.start, trigger.start + trigger.duration)
            found.setdefault(trigger.target, []).append(window)
    return found


def _apply_service_triggers(topology: Topology, services: Mapping[str, Service]) -> None:
    for trigger in topology.triggers:
        end = trigger.start + trigger.duration
        if isinstance(trigger, Outage):
            services[trigger.target].outages.append((trigger.start, end, trigger.mode))
        elif isinstance(trigger, LatencyInjection):
            services[trigger.target].slowdowns.append((trigger.start, end, trigger.extra))
        elif isinstance(trigger, CapacityLoss):
            services[trigger.target].lose_capacity(trigger.start, end, trigger.fraction)


def _recovery_time(
    successes: list[float], offered: list[float], after: float, fraction: float
) -> float:
    """Seconds from ``after`` to the start of the final healthy stretch (NaN if none).

    Healthy: the 5 s moving average of goodput is at least ``fraction`` of the load offered in
    the same 5 s, and stays so until the end of the run (as simple-collapse measures it).
    """
    window = 5
    first = math.ceil(after)
    last = len(successes) - window
    if last < first:
        return math.nan
    recovered_at = None
    for t in range(last, first - 1, -1):
        if sum(successes[t : t + window]) < fraction * sum(offered[t : t + window]):
            break
        recovered_at = t
    return math.nan if recovered_at is None else float(recovered_at) - after
