"""Whole-graph checks and queries of a :class:`~stormproof.model.spec.Topology`.

The dataclasses check their own fields; this module checks what needs the whole graph: names
that must exist and be unique, cycles, trigger targets and windows. It also answers the
questions the linter and the simulator share: who calls a service, in what order services can
be visited, which zones a service serves.

A problem is reported with its *path* in the file's terms -- ``("edges", 2, "to")`` or
``("services", "db", "workers")`` -- so the loader can attach a line number to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stormproof.model.spec import (
    CapacityLoss,
    ClientSpec,
    EdgeSpec,
    LoadSpike,
    Partition,
    PolicySet,
    ServiceSpec,
    Topology,
)

__all__ = [
    "Caller",
    "Problem",
    "callers",
    "check",
    "check_policy_set",
    "format_path",
    "served_zones",
    "topological_order",
]

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """``("edges", 0, "client", "timeout")`` -> ``edges[0].client.timeout``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


@dataclass(frozen=True, slots=True)
class Problem:
    """A rule broken at ``path`` (in the file's terms)."""

    path: Path
    rule: str

    @property
    def field(self) -> str:
        """The dotted field path."""
        return format_path(self.path)


@dataclass(frozen=True, slots=True)
class Caller:
    """Something that calls a service: an edge, an entry point or a fleet.

    ``kind`` is ``edge``, ``entry`` or ``fleet``; ``name`` is the edge key, entry or fleet
    name; ``source`` is the calling service (``None`` for outside callers); ``zone`` is the
    caller's zone when known.
    """

    kind: str
    name: str
    source: str | None
    client: ClientSpec
    zone: str | None


def callers(topology: Topology, service: str) -> list[Caller]:
    """Everything that calls ``service``, in file order (entries, fleets, then edges)."""
    found: list[Caller] = []
    for entry in topology.entries:
        if entry.target == service:
            found.append(Caller("entry", entry.name, None, entry.client, entry.zone))
    for fleet in topology.fleets:
        if fleet.target == service:
            found.append(Caller("fleet", fleet.name, None, fleet.client, fleet.zone))
    for edge in topology.edges:
        if edge.target == service:
            zones = _zones_of(topology, edge.source)
            zone = zones[0] if len(zones) == 1 else None
            found.append(Caller("edge", edge.key, edge.source, edge.client, zone))
    return found


def _zones_of(topology: Topology, name: str) -> tuple[str, ...]:
    for service in topology.services:
        if service.name == name:
            return service.zones
    return ()


def served_zones(topology: Topology, service: str) -> list[str]:
    """The zones ``service`` serves: its callers' zones (a multi-zone caller counts for each)."""
    zones: list[str] = []
    for entry in topology.entries:
        if entry.target == service and entry.zone is not None and entry.zone not in zones:
            zones.append(entry.zone)
    for fleet in topology.fleets:
        if fleet.target == service and fleet.zone is not None and fleet.zone not in zones:
            zones.append(fleet.zone)
    for edge in topology.edges:
        if edge.target == service:
            for zone in _zones_of(topology, edge.source):
                if zone not in zones:
                    zones.append(zone)
    return zones


def outgoing(topology: Topology, service: str) -> list[EdgeSpec]:
    """The edges ``service`` calls, in the order it calls them."""
    return [edge for edge in topology.edges if edge.source == service]


def topological_order(topology: Topology) -> list[str] | None:
    """Service names, callers before callees; ``None`` if the edges form a cycle.

    Kahn's algorithm over file order, so the result is deterministic.
    """
    names = [service.name for service in topology.services]
    indegree = dict.fromkeys(names, 0)
    for edge in topology.edges:
        if edge.target in indegree and edge.source in indegree:
            indegree[edge.target] += 1
    ready = [name for name in names if indegree[name] == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for edge in topology.edges:
            if edge.source == name and edge.target in indegree:
                indegree[edge.target] -= 1
                if indegree[edge.target] == 0:
                    ready.append(edge.target)
    return order if len(order) == len(names) else None


def _cycle(topology: Topology) -> list[str]:
    """One cycle of service names (first name repeated at the end), or ``[]``."""
    graph: dict[str, list[str]] = {service.name: [] for service in topology.services}
    for edge in topology.edges:
        if edge.source in graph and edge.target in graph:
            graph[edge.source].append(edge.target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for name in graph:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return []


def check(topology: Topology) -> list[Problem]:
    """Every whole-graph problem of ``topology`` (empty when it is consistent)."""
    problems: list[Problem] = []
    services: dict[str, ServiceSpec] = {}
    for service in topology.services:
        if service.name in services:
            problems.append(Problem(("services", service.name), "duplicate service name"))
        services[service.name] = service
    known_zones = set(topology.zones)

    def zone_ok(path: Path, zone: str | None) -> None:
        if zone is not None and topology.zones and zone not in known_zones:
            problems.append(
                Problem(path, f"unknown zone {zone!r}; zones: {', '.join(topology.zones)}")
            )

    def service_ok(path: Path, name: str) -> None:
        if name not in services:
            valid = ", ".join(services)
            problems.append(Problem(path, f"unknown service {name!r}; services: {valid}"))

    for service in topology.services:
        for zone in service.zones:
            zone_ok(("services", service.name, "zones"), zone)
    for index, edge in enumerate(topology.edges):
        zone_ok(("edges", index, "for_zone"), edge.for_zone)
    seen_edges: set[str] = set()
    for index, edge in enumerate(topology.edges):
        service_ok(("edges", index, "from"), edge.source)
        service_ok(("edges", index, "to"), edge.target)
        if edge.source == edge.target:
            problems.append(Problem(("edges", index, "to"), "a service cannot call itself"))
        if edge.key in seen_edges:
            problems.append(Problem(("edges", index), f"duplicate edge {edge.key}"))
        seen_edges.add(edge.key)
    outside: set[str] = set()
    for group, items in (("entries", topology.entries), ("fleets", topology.fleets)):
        for item in items:
            if item.name in outside:
                problems.append(Problem((group, item.name), "name used by another entry/fleet"))
            outside.add(item.name)
            service_ok((group, item.name, "target"), item.target)
            zone_ok((group, item.name, "zone"), item.zone)
    if not topology.entries and not topology.fleets:
        problems.append(Problem(("entries",), "needs at least one entry point or fleet"))
    if not topology.allow_cycles and topology_has_cycle(topology):
        cycle = " -> ".join(_cycle(topology))
        problems.append(
            Problem(("edges",), f"the edges form a cycle ({cycle}); set allow_cycles: true")
        )
    trigger_names: set[str] = set()
    for trigger in topology.triggers:
        path: Path = ("triggers", trigger.name)
        if trigger.name in trigger_names:
            problems.append(Problem(path, "duplicate trigger name"))
        trigger_names.add(trigger.name)
        if trigger.start + trigger.duration > topology.horizon:
            problems.append(
                Problem(
                    (*path, "duration"),
                    f"the window ends after the horizon ({topology.horizon:g} s)",
                )
            )
        if isinstance(trigger, LoadSpike):
            names = [entry.name for entry in topology.entries]
            if trigger.target not in names:
                problems.append(
                    Problem(
                        (*path, "target"),
                        f"unknown entry {trigger.target!r}; entries: {', '.join(names)}",
                    )
                )
        elif isinstance(trigger, Partition) and "->" in trigger.target:
            if trigger.target not in seen_edges:
                problems.append(Problem((*path, "target"), f"unknown edge {trigger.target!r}"))
        else:
            service_ok((*path, "target"), trigger.target)
            if (
                isinstance(trigger, CapacityLoss)
                and trigger.target in services
                and services[trigger.target].workers is None
            ):
                problems.append(
                    Problem((*path, "target"), "capacity_loss needs a service with bounded workers")
                )
    stuck = topology.stuck
    if stuck is not None and stuck.late_start >= topology.horizon:
        problems.append(Problem(("stuck", "late_start"), "must be < horizon"))
    set_names: set[str] = set()
    for policy_set in topology.policy_sets:
        path = ("policy_sets", policy_set.name)
        if policy_set.name in set_names or policy_set.name == "as_written":
            problems.append(Problem(path, "duplicate policy set name ('as_written' is taken)"))
        set_names.add(policy_set.name)
        problems += [
            Problem((*path, *p.path), p.rule) for p in check_policy_set(topology, policy_set)
        ]
    return problems


def check_policy_set(topology: Topology, policy_set: PolicySet) -> list[Problem]:
    """Names in ``policy_set`` that ``topology`` does not have; paths relative to the set."""
    problems: list[Problem] = []
    edges = [edge.key for edge in topology.edges]
    entries = [entry.name for entry in topology.entries]
    fleets = [fleet.name for fleet in topology.fleets]
    services = [service.name for service in topology.services]

    def known(group: str, name: str, valid: list[str], what: str) -> None:
        if name not in valid:
            listed = ", ".join(valid) or "none"
            problems.append(Problem((group, name), f"unknown {what} {name!r}; {group}: {listed}"))

    for key, _ in policy_set.edges:
        known("edges", key, edges, "edge")
    for name, _ in policy_set.entries:
        # Inline sets have always named fleets under entries too.
        known("entries", name, entries + fleets, "entry")
    for name, _ in policy_set.fleets:
        known("fleets", name, fleets, "fleet")
    for name, _ in policy_set.services:
        known("services", name, services, "service")
    return problems


def topology_has_cycle(topology: Topology) -> bool:
    """Whether the edges between known services form a cycle."""
    return topological_order(topology) is None
