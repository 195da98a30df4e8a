"""DNS plan automation (the DynamoDB outage of October 2025) as deterministic step functions.

The model of issue #7 (scenario ``dynamodb-dns-2025``), after the seed report's DynamoDB section:
a *Planner* makes plan generations; each of several *Enactors* picks up the newest plan, checks
**once** that it is newer than what is applied, applies it endpoint by endpoint, then runs a
clean-up that deletes plans "significantly older" (``margin`` generations) than the one it
applied. A record holds the IP addresses of the plan applied to it; deleting a plan removes the
addresses of every record that still uses it (the report: "As this plan was deleted, all IP
addresses for the regional endpoint were immediately removed").

Every actor's next step is a pure function of the explicit :class:`DnsState` -- no clock, no
randomness -- so the same steps run on the simulation kernel (timed by the scenario) and under
the controlled scheduler of :mod:`stormproof.sim.explore` (ordered by a choice list).

Two designs:

* ``original`` -- the one-time check at pick-up, unconditional writes, and a clean-up relative to
  the plan the Enactor itself just applied;
* ``fenced`` -- every endpoint write is a generation-checked compare-and-set
  (:class:`~stormproof.policies.fencing.FencedRegister`), and clean-up deletes only generations
  that :func:`~stormproof.policies.fencing.may_delete` allows relative to the *oldest plan in use*
  on any endpoint, so the active plan is never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stormproof.errors import ConfigError
from stormproof.policies.fencing import FencedRegister, may_apply, may_delete

__all__ = [
    "DESIGNS",
    "INVARIANTS",
    "PLANNER",
    "DnsState",
    "EnactorState",
    "ResolverCache",
    "check_invariants",
    "deleted_active_plans",
    "empty_records",
    "enabled",
    "initial_state",
    "next_step_kind",
    "plan_ips",
    "regressions",
    "repair",
    "step",
]

#: The two designs a model can be built with.
DESIGNS = ("original", "fenced")
#: The invariants, by name, in the order :func:`check_invariants` reports them.
INVARIANTS = ("empty_record", "active_plan_deleted", "generation_regression")

#: The Planner's actor name (Enactors are E0, E1, ...).
PLANNER = "P"


def plan_ips(generation: int) -> tuple[str, ...]:
    """The (never empty) addresses of plan ``generation``: two made-up IPs per generation."""
    return (
        f"10.{generation // 256}.{generation % 256}.1",
        f"10.{generation // 256}.{generation % 256}.2",
    )


@dataclass(slots=True)
class EnactorState:
    """Where one Enactor is: ``phase`` is idle, picked, applying or cleanup."""

    phase: str = "idle"
    generation: int = 0
    endpoint: int = 0
    last_seen: int = 0

    def key(self) -> tuple[object, ...]:
        """A hashable summary (the addresses follow from the generation)."""
        return (self.phase, self.generation, self.endpoint, self.last_seen)


@dataclass(slots=True)
class DnsState:
    """Everything the actors read and write: plans, records, Enactors, and counters.

    ``records[i]`` is endpoint ``i``'s record: its generation and addresses (``value`` empty or
    ``None`` means the record resolves to nothing). ``high[i]`` is the newest generation ever
    applied to endpoint ``i`` (to detect a regression). ``max_generation`` bounds the Planner
    (for exhaustive search; the kernel scenario passes a huge bound).
    """

    design: str
    margin: int
    max_generation: int
    plans: dict[int, tuple[str, ...]]
    records: list[FencedRegister[tuple[str, ...]]]
    high: list[int]
    enactors: list[EnactorState]
    generation: int = 1
    inconsistent_checks: int = 0
    stale_writes: int = 0
    deleted: list[int] = field(default_factory=list)

    def clone(self) -> DnsState:
        """An independent copy (for branching in a search)."""
        records: list[FencedRegister[tuple[str, ...]]] = []
        for old in self.records:
            new: FencedRegister[tuple[str, ...]] = FencedRegister()
            new.generation, new.value, new.rejected = old.generation, old.value, old.rejected
            records.append(new)
        return DnsState(
            design=self.design,
            margin=self.margin,
            max_generation=self.max_generation,
            plans=dict(self.plans),
            records=records,
            high=list(self.high),
            enactors=[
                EnactorState(e.phase, e.generation, e.endpoint, e.last_seen) for e in self.enactors
            ],
            generation=self.generation,
            inconsistent_checks=self.inconsistent_checks,
            stale_writes=self.stale_writes,
            deleted=list(self.deleted),
        )

    def key(self) -> tuple[object, ...]:
        """A hashable summary of everything that decides future behaviour and invariants."""
        return (
            self.generation,
            tuple(sorted(self.plans)),
            tuple((r.generation, bool(r.value)) for r in self.records),
            tuple(self.high),
            tuple(e.key() for e in self.enactors),
        )

    def actors(self) -> list[str]:
        """Every actor's name: ``P`` (Planner), then ``E0``, ``E1``, ... (Enactors)."""
        return [PLANNER, *(f"E{i}" for i in range(len(self.enactors)))]


def initial_state(
    design: str = "original",
    *,
    enactors: int = 3,
    endpoints: int = 2,
    margin: int = 1,
    max_generation: int = 4,
) -> DnsState:
    """Generation 1 planned and applied on every endpoint; all Enactors idle, having seen it.

    ``margin``: clean-up deletes plans more than ``margin`` generations older than its
    reference (original: the plan just applied; fenced: the oldest plan in use).
    """
    if design not in DESIGNS:
        raise ConfigError("design", f"must be one of {', '.join(DESIGNS)}", design)
    for name, value, low in (
        ("enactors", enactors, 1),
        ("endpoints", endpoints, 1),
        ("margin", margin, 0),
        ("max_generation", max_generation, 1),
    ):
        if value < low:
            raise ConfigError(name, f"must be >= {low}", value)
    records: list[FencedRegister[tuple[str, ...]]] = []
    for _ in range(endpoints):
        register: FencedRegister[tuple[str, ...]] = FencedRegister()
        register.apply(1, plan_ips(1))
        records.append(register)
    return DnsState(
        design=design,
        margin=margin,
        max_generation=max_generation,
        plans={1: plan_ips(1)},
        records=records,
        high=[1] * endpoints,
        enactors=[EnactorState(last_seen=1) for _ in range(enactors)],
    )


def _enactor(state: DnsState, actor: str) -> EnactorState:
    if not actor.startswith("E") or not actor[1:].isdigit():
        raise ConfigError("actor", f"must be P or E0..E{len(state.enactors) - 1}", actor)
    index = int(actor[1:])
    if index >= len(state.enactors):
        raise ConfigError("actor", f"must be P or E0..E{len(state.enactors) - 1}", actor)
    return state.enactors[index]


def next_step_kind(state: DnsState, actor: str) -> str | None:
    """The kind of ``actor``'s next step (plan, pickup, check, apply, cleanup), or ``None``.

    ``None`` means the actor has nothing to do now: the Planner at its generation bound, or an
    idle Enactor with no plan newer than the newest it has already picked up.
    """
    if actor == PLANNER:
        return "plan" if state.generation < state.max_generation else None
    enactor = _enactor(state, actor)
    if enactor.phase == "idle":
        latest = max(state.plans, default=0)
        return "pickup" if latest > enactor.last_seen else None
    return {"picked": "check", "applying": "apply", "cleanup": "cleanup"}[enactor.phase]


def enabled(state: DnsState) -> list[str]:
    """Actors that have a step to take, in a fixed order (Planner first)."""
    actors = [PLANNER] if state.generation < state.max_generation else []
    latest = max(state.plans, default=0)
    for index, enactor in enumerate(state.enactors):
        if enactor.phase != "idle" or latest > enactor.last_seen:
            actors.append(f"E{index}")
    return actors


def _active_generations(state: DnsState) -> list[int | None]:
    return [record.generation for record in state.records]


def step(state: DnsState, actor: str) -> str:
    """Take ``actor``'s next step, mutating ``state``; returns a readable name of the step.

    Raises ConfigError if the actor has nothing to do (see :func:`next_step_kind`).
    """
    kind = next_step_kind(state, actor)
    if kind is None:
        raise ConfigError("actor", "has no enabled step", actor)
    if kind == "plan":
        state.generation += 1
        state.plans[state.generation] = plan_ips(state.generation)
        return f"P plans generation {state.generation}"
    enactor = _enactor(state, actor)
    if kind == "pickup":
        latest = max(state.plans)
        enactor.generation = latest
        enactor.last_seen = latest
        enactor.phase = "picked"
        return f"{actor} picks up plan {latest}"
    if kind == "check":
        return _check(state, actor, enactor)
    if kind == "apply":
        return _apply(state, actor, enactor)
    return _cleanup(state, actor, enactor)


def _check(state: DnsState, actor: str, enactor: EnactorState) -> str:
    """The one-time check: the plan must be newer than every applied one, and all plans exist."""
    active = _active_generations(state)
    if any(g is None or g not in state.plans for g in active):
        # The active plan is gone: "the system was left in an inconsistent state that prevented
        # subsequent plan updates from being applied by any DNS Enactors".
        state.inconsistent_checks += 1
        enactor.phase = "idle"
        return f"{actor} check of plan {enactor.generation}: active plan missing, gives up"
    newest = max(g for g in active if g is not None)
    if not may_apply(newest, enactor.generation):
        enactor.phase = "idle"
        return f"{actor} check of plan {enactor.generation}: not newer than {newest}, skips"
    enactor.phase, enactor.endpoint = "applying", 0
    return f"{actor} check of plan {enactor.generation}: newer than {newest}, ok"


def _apply(state: DnsState, actor: str, enactor: EnactorState) -> str:
    index = enactor.endpoint
    record = state.records[index]
    generation = enactor.generation
    name = f"{actor} applies plan {generation} to endpoint {index}"
    if state.design == "fenced":
        if not record.apply(generation, state.plans.get(generation, ())):
            state.stale_writes += 1
            name += f": rejected, endpoint has {record.generation}"
    else:
        # The original write: a Route53 transaction that replaces whatever is there with the
        # plan's addresses -- none if the plan has meanwhile been deleted.
        record.generation, record.value = generation, state.plans.get(generation, ())
    if record.generation is not None and record.generation > state.high[index]:
        state.high[index] = record.generation
    enactor.endpoint += 1
    if enactor.endpoint == len(state.records):
        enactor.phase = "cleanup"
    return name


def _cleanup(state: DnsState, actor: str, enactor: EnactorState) -> str:
    if state.design == "fenced":
        active = _active_generations(state)
        oldest = None if any(g is None for g in active) else min(g for g in active if g is not None)
        doomed = sorted(g for g in state.plans if may_delete(g, oldest, state.margin))
    else:
        # "identifies plans that are significantly older than the one it just applied".
        doomed = sorted(g for g in state.plans if g < enactor.generation - state.margin)
    for generation in doomed:
        del state.plans[generation]
        state.deleted.append(generation)
        for record in state.records:
            if record.generation == generation:
                record.value = ()  # the plan's addresses leave with it
    enactor.phase = "idle"
    listed = ", ".join(map(str, doomed)) if doomed else "nothing"
    return f"{actor} clean-up after plan {enactor.generation} deletes {listed}"


def repair(state: DnsState) -> str:
    """The operator's manual fix: the newest plan, re-created if needed, on every endpoint."""
    latest = max(state.generation, max(state.plans, default=0))
    state.plans[latest] = plan_ips(latest)
    for index, record in enumerate(state.records):
        record.generation, record.value = latest, state.plans[latest]
        state.high[index] = max(state.high[index], latest)
    return f"operator restores plan {latest} on every endpoint"


# -- invariants ---------------------------------------------------------------------------------


def empty_records(state: DnsState) -> list[int]:
    """Endpoints whose record resolves to no address (invariant: never any)."""
    return [i for i, record in enumerate(state.records) if not record.value]


def deleted_active_plans(state: DnsState) -> list[int]:
    """Endpoints whose applied plan is no longer stored (invariant: never any)."""
    return [
        i
        for i, record in enumerate(state.records)
        if record.generation is not None and record.generation not in state.plans
    ]


def regressions(state: DnsState) -> list[int]:
    """Endpoints whose record is older than a generation applied there before (never any)."""
    return [
        i
        for i, record in enumerate(state.records)
        if record.generation is None or record.generation < state.high[i]
    ]


def check_invariants(
    state: DnsState, invariants: tuple[str, ...] = INVARIANTS
) -> list[tuple[str, list[int]]]:
    """The violated invariants among ``invariants``, each with the endpoints that break it."""
    found: list[tuple[str, list[int]]] = []
    for name in invariants:
        check = _CHECKS.get(name)
        if check is None:
            raise ConfigError("invariant", f"must be one of {', '.join(INVARIANTS)}", name)
        endpoints = check(state)
        if endpoints:
            found.append((name, endpoints))
    return found


_CHECKS = {
    "empty_record": empty_records,
    "active_plan_deleted": deleted_active_plans,
    "generation_regression": regressions,
}


# -- resolvers ----------------------------------------------------------------------------------


class ResolverCache:
    """A caching resolver: an answer fetched at ``t`` is served until ``t + ttl``.

    An empty answer (no addresses) is cached too, as a negative answer is; so clients keep
    failing until it expires even after the record is repaired, and keep getting the old
    addresses for up to ``ttl`` after the record empties (the report: customers recovered "as
    cached DNS records expired between 2:25 AM and 2:40 AM").
    """

    __slots__ = ("answer", "expires", "ttl")

    def __init__(self, ttl: float) -> None:
        if not ttl > 0:
            raise ConfigError("ttl", "must be > 0", ttl)
        self.ttl = float(ttl)
        self.answer: tuple[str, ...] | None = None
        self.expires = float("-inf")

    def resolve(self, now: float, record: FencedRegister[tuple[str, ...]]) -> tuple[str, ...]:
        """The answer at ``now``: the cached one while fresh, else ``record``'s (then cached)."""
        if now >= self.expires or self.answer is None:
            self.answer = record.value or ()
            self.expires = now + self.ttl
        return self.answer
