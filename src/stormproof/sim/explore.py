"""Interleaving search for races: run actors' steps in a chosen order and check invariants.

A *choice list* names, step by step, which actor moves next (``P`` the Planner, ``E0`` ...
the Enactors of :mod:`stormproof.sim.parts.dns`); each actor has exactly one next step, so the
list fixes the whole execution. Three ways to pick choice lists:

* :func:`exhaustive` -- depth-first search over every order up to ``max_steps`` steps. States
  already reached at the same or a smaller depth are not expanded again (what happens next
  depends only on the state), and once a counterexample is found, only shorter paths are
  searched, so the one returned is a shortest one within the bound.
* :func:`sample` -- random orders from a seeded :class:`random.Random`.
* :func:`replay` -- one given choice list, e.g. a counterexample, step by step.

Invariants are checked after every step. A counterexample's trace hash is a BLAKE2b digest of
its readable step names, so a replay that reproduces it has the same hash.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from stormproof._validate import finite_at_least
from stormproof.errors import ConfigError
from stormproof.sim.parts import dns

__all__ = [
    "Counterexample",
    "ExploreResult",
    "ModelConfig",
    "Replay",
    "exhaustive",
    "parse_choices",
    "replay",
    "sample",
    "trace_hash",
]


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The size of the DNS model searched: small bounds keep exhaustive search fast."""

    design: str = "original"
    enactors: int = 3
    endpoints: int = 2
    margin: int = 1
    max_generation: int = 4

    def initial(self) -> dns.DnsState:
        """A fresh initial state of this size."""
        return dns.initial_state(
            self.design,
            enactors=self.enactors,
            endpoints=self.endpoints,
            margin=self.margin,
            max_generation=self.max_generation,
        )


def trace_hash(steps: Iterable[str]) -> str:
    """Hex BLAKE2b (16 bytes) of the step names, one per line."""
    return hashlib.blake2b("\n".join(steps).encode(), digest_size=16).hexdigest()


def parse_choices(text: str) -> tuple[str, ...]:
    """``"P,E0,E0"`` (commas and/or spaces) as a choice tuple; ConfigError on a bad name."""
    choices = tuple(part for part in text.replace(",", " ").split() if part)
    for choice in choices:
        if choice != "P" and not (choice[:1] == "E" and choice[1:].isdigit()):
            raise ConfigError("choices", "each choice must be P or E<n>", choice)
    return choices


@dataclass(frozen=True, slots=True)
class Counterexample:
    """A choice list that breaks an invariant, its readable steps and what it breaks."""

    choices: tuple[str, ...]
    steps: tuple[str, ...]
    violations: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def trace_hash(self) -> str:
        """BLAKE2b of the step names (see :func:`trace_hash`)."""
        return trace_hash(self.steps)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "choices": ",".join(self.choices),
            "steps": list(self.steps),
            "violations": [{"invariant": n, "endpoints": list(e)} for n, e in self.violations],
            "trace_hash": self.trace_hash,
        }


@dataclass(frozen=True, slots=True)
class ExploreResult:
    """The outcome of a search.

    ``interleavings``: executions that ended (nothing left to do, the step bound, a violation,
    or -- exhaustive only -- a state already explored); ``states``: distinct states expanded
    (exhaustive) or steps executed (random); ``bounded``: some execution was cut by
    ``max_steps`` (so the search says nothing beyond it); ``complete``: false when a time
    budget stopped the search before it finished (then "no violation" proves nothing).
    """

    design: str
    mode: str
    found: bool
    interleavings: int
    states: int
    bounded: bool
    max_steps: int
    counterexample: Counterexample | None = None
    invariants: tuple[str, ...] = field(default=dns.INVARIANTS)
    complete: bool = True

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "design": self.design,
            "mode": self.mode,
            "found": self.found,
            "interleavings": self.interleavings,
            "states": self.states,
            "bounded": self.bounded,
            "max_steps": self.max_steps,
            "complete": self.complete,
            "invariants": list(self.invariants),
            "counterexample": None
            if self.counterexample is None
            else self.counterexample.to_json(),
        }


def _violations(
    state: dns.DnsState, invariants: tuple[str, ...]
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(eps)) for name, eps in dns.check_invariants(state, invariants))


def _check_bounds(max_steps: int, invariants: Sequence[str]) -> tuple[str, ...]:
    if max_steps < 1:
        raise ConfigError("max_steps", "must be >= 1", max_steps)
    chosen = tuple(invariants)
    if not chosen:
        raise ConfigError("invariants", "must name at least one invariant")
    for name in chosen:
        if name not in dns.INVARIANTS:
            raise ConfigError("invariant", f"must be one of {', '.join(dns.INVARIANTS)}", name)
    return chosen


class _OutOfBudget(Exception):
    """Raised inside the search when its time budget is spent."""


def _deadline(budget: float | None, clock: Callable[[], float]) -> float:
    if budget is None:
        return math.inf
    finite_at_least("budget", budget, 0.0)
    return clock() + budget


def exhaustive(
    config: ModelConfig,
    max_steps: int = 60,
    invariants: Sequence[str] = dns.INVARIANTS,
    *,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ExploreResult:
    """Depth-first search over every interleaving of up to ``max_steps`` steps.

    Returns a shortest counterexample if any execution within the bound breaks one of
    ``invariants``. ``budget`` (seconds on ``clock``) stops the search early; the result then
    says ``complete=False``.
    """
    chosen = _check_bounds(max_steps, invariants)
    deadline = _deadline(budget, clock)
    seen: dict[tuple[object, ...], int] = {}
    choices: list[str] = []
    steps: list[str] = []
    best: list[Counterexample] = []
    counts = {"interleavings": 0, "bounded": 0}
    limit = [max_steps]

    def visit(state: dns.DnsState) -> None:
        depth = len(choices)
        if len(seen) % 256 == 0 and clock() > deadline:
            raise _OutOfBudget
        key = state.key()
        if seen.get(key, max_steps + 1) <= depth:
            counts["interleavings"] += 1
            return
        seen[key] = depth
        violated = _violations(state, chosen)
        if violated:
            counts["interleavings"] += 1
            best[:] = [Counterexample(tuple(choices), tuple(steps), violated)]
            limit[0] = depth - 1  # from now on, only shorter counterexamples are of interest
            return
        actors = dns.enabled(state)
        if not actors:
            counts["interleavings"] += 1
            return
        if depth >= limit[0]:
            counts["interleavings"] += 1
            if depth >= max_steps:
                counts["bounded"] += 1
            return
        for actor in actors:
            child = state.clone()
            steps.append(dns.step(child, actor))
            choices.append(actor)
            visit(child)
            choices.pop()
            steps.pop()

    complete = True
    try:
        visit(config.initial())
    except _OutOfBudget:
        complete = False
    return ExploreResult(
        design=config.design,
        mode="exhaustive",
        found=bool(best),
        interleavings=counts["interleavings"],
        states=len(seen),
        bounded=counts["bounded"] > 0,
        max_steps=max_steps,
        counterexample=best[0] if best else None,
        invariants=chosen,
        complete=complete,
    )


def sample(
    config: ModelConfig,
    samples: int = 10_000,
    seed: int = 0,
    max_steps: int = 60,
    invariants: Sequence[str] = dns.INVARIANTS,
    *,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ExploreResult:
    """Run ``samples`` random interleavings (uniform choice among enabled actors per step).

    Returns the shortest counterexample met, if any; the same seed gives the same result.
    ``budget`` (seconds on ``clock``) stops sampling early: ``interleavings`` then counts the
    samples run and ``complete`` is false.
    """
    chosen = _check_bounds(max_steps, invariants)
    deadline = _deadline(budget, clock)
    if samples < 1:
        raise ConfigError("samples", "must be >= 1", samples)
    rng = random.Random(seed)
    root = config.initial()
    best: Counterexample | None = None
    executed = 0
    bounded = False
    ran = 0
    for _ in range(samples):
        if clock() > deadline:
            break
        ran += 1
        state = root.clone()
        choices: list[str] = []
        steps: list[str] = []
        while True:
            actors = dns.enabled(state)
            if not actors:
                break
            if len(choices) >= max_steps:
                bounded = True
                break
            actor = actors[rng.randrange(len(actors))]
            steps.append(dns.step(state, actor))
            choices.append(actor)
            executed += 1
            violated = _violations(state, chosen)
            if violated:
                if best is None or len(choices) < len(best.choices):
                    best = Counterexample(tuple(choices), tuple(steps), violated)
                break
    return ExploreResult(
        design=config.design,
        mode="random",
        found=best is not None,
        interleavings=ran,
        states=executed,
        bounded=bounded,
        max_steps=max_steps,
        counterexample=best,
        invariants=chosen,
        complete=ran == samples,
    )


@dataclass(frozen=True, slots=True)
class Replay:
    """One replayed choice list: its steps, violations and the trace hash.

    ``violations``: the first violation met (empty if none), after step ``violated_at``
    (1-based); ``final_violations``: those of the state after the last step.
    """

    choices: tuple[str, ...]
    steps: tuple[str, ...]
    violations: tuple[tuple[str, tuple[int, ...]], ...]
    state: dns.DnsState
    violated_at: int | None = None
    final_violations: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def trace_hash(self) -> str:
        """BLAKE2b of the step names (see :func:`trace_hash`)."""
        return trace_hash(self.steps)


def replay(
    config: ModelConfig,
    choices: Sequence[str],
    invariants: Sequence[str] = dns.INVARIANTS,
    *,
    stop_at_violation: bool = True,
) -> Replay:
    """Run ``choices`` in order from the initial state, checking invariants after each step.

    Stops at the first violation unless ``stop_at_violation`` is false; a choice naming an
    actor with nothing to do raises ConfigError (the list does not fit this model).
    """
    chosen = _check_bounds(max(1, len(choices)), invariants)
    state = config.initial()
    steps: list[str] = []
    violated: tuple[tuple[str, tuple[int, ...]], ...] = ()
    violated_at: int | None = None
    now: tuple[tuple[str, tuple[int, ...]], ...] = ()
    for index, actor in enumerate(choices):
        if actor not in state.actors():
            raise ConfigError("choices", f"step {index + 1}: no actor {actor} in this model", actor)
        if dns.next_step_kind(state, actor) is None:
            raise ConfigError("choices", f"step {index + 1}: {actor} has nothing to do", actor)
        steps.append(dns.step(state, actor))
        now = _violations(state, chosen)
        if now and not violated:
            violated, violated_at = now, index + 1
            if stop_at_violation:
                break
    return Replay(tuple(choices[: len(steps)]), tuple(steps), violated, state, violated_at, now)
