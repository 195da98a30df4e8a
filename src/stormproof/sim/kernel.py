"""The discrete-event kernel: a time-ordered queue of callbacks, and processes on top of it.

Everything the simulator does is a callback scheduled at a virtual time. The queue is a binary
heap of ``[time, priority, sequence, callback, args]`` entries, so events run in order of time,
then priority (lower first), then insertion -- a total order that does not depend on object
identity, hashing or dict order, which is what makes runs reproducible.

Two styles of model, freely mixed:

* **callbacks** -- ``sim.schedule(delay, fn, *args)``: the fastest; the parts and the incident
  scenarios use it;
* **processes** -- generator functions started with ``sim.process(gen)`` that ``yield`` a delay
  (a number) or an :class:`Event` to wait for, in the style of SimPy.

The simulation is also a :class:`~stormproof.clock.Clock`: policies from
:mod:`stormproof.policies` read ``sim.now()`` unchanged, so the objects that run in production
run here on virtual time.

Randomness comes from named streams, :meth:`Simulation.rng`, each seeded from the run seed and
the stream's name only, so adding a component (a new stream) never shifts another's draws.
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
from array import array
from collections.abc import Callable, Generator, Iterable
from heapq import heappop, heappush
from typing import Any

from stormproof.errors import ConfigError, StormproofError

__all__ = [
    "AnyOf",
    "Event",
    "Interrupt",
    "Process",
    "Simulation",
    "SimulationLimitExceeded",
    "stream_seed",
]

_BIG_ENDIAN = sys.byteorder == "big"

#: A process generator: yields a delay in seconds or an Event, receives the event's value.
ProcessGenerator = Generator["float | Event", Any, Any]


class SimulationLimitExceeded(StormproofError):
    """A run reached its ``max_events`` bound (a model that would run away is stopped)."""


class Interrupt(Exception):
    """Thrown into a process by :meth:`Process.interrupt`; ``cause`` says why."""

    def __init__(self, cause: Any = None) -> None:
        super().__init__(cause)
        self.cause = cause


def stream_seed(seed: int, name: str) -> int:
    """The seed of the random stream ``name`` in a run seeded with ``seed``.

    Derived with SHA-256 from the two values only, so it is the same in every process and under
    every ``PYTHONHASHSEED``.
    """
    digest = hashlib.sha256(f"stormproof:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Simulation:
    """A discrete-event simulation on virtual time, seeded by ``seed``.

    Args:
        seed: the run seed; every random stream derives from it.
        start: the initial virtual time (seconds).
        trace: when true, every executed event is folded into :attr:`trace_hash` and kept in
            :attr:`trace_log` as ``(time, priority, name)``; when false only the hash is kept
            if ``hash_trace`` is true.
        hash_trace: fold every executed event into :meth:`trace_hash` (the default; turning it
            off makes the loop about a third faster).
        max_events: stop with :class:`SimulationLimitExceeded` once this many events have run
            over the simulation's life (all ``run`` calls together).
    """

    __slots__ = (
        "_hasher",
        "_name_ids",
        "_now",
        "_queue",
        "_sequence",
        "_streams",
        "_trace_codes",
        "_trace_times",
        "events_run",
        "max_events",
        "seed",
        "trace_log",
    )

    def __init__(
        self,
        seed: int = 0,
        *,
        start: float = 0.0,
        trace: bool = False,
        hash_trace: bool = True,
        max_events: int | None = None,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError("seed", "must be an integer", seed)
        if max_events is not None and (not isinstance(max_events, int) or max_events < 1):
            raise ConfigError("max_events", "must be a positive integer or None", max_events)
        self.seed = seed
        self._now = float(start)
        self._queue: list[list[Any]] = []
        self._sequence = 0
        self._streams: dict[str, random.Random] = {}
        self._hasher = hashlib.blake2b(digest_size=16) if (hash_trace or trace) else None
        # Fixed-width codes, hashed little-endian, so the hash does not depend on the machine.
        self._trace_times = array("d")
        self._trace_codes = array("q")
        self._name_ids: dict[str, int] = {}
        self.trace_log: list[tuple[float, int, str]] | None = [] if trace else None
        self.events_run = 0
        self.max_events = max_events

    # -- time -------------------------------------------------------------------------------

    def now(self) -> float:
        """The current virtual time in seconds (the :class:`~stormproof.clock.Clock` protocol)."""
        return self._now

    # -- randomness -------------------------------------------------------------------------

    def rng(self, name: str) -> random.Random:
        """The random stream called ``name``, created on first use from the run seed and name."""
        stream = self._streams.get(name)
        if stream is None:
            stream = random.Random(stream_seed(self.seed, name))
            self._streams[name] = stream
        return stream

    # -- scheduling -------------------------------------------------------------------------

    def schedule(
        self, delay: float, callback: Callable[..., Any], *args: Any, priority: int = 0
    ) -> list[Any]:
        """Run ``callback(*args)`` ``delay`` seconds from now; returns a handle for :meth:`cancel`.

        A negative or NaN delay is a modelling error and raises ``ConfigError``.
        """
        if delay >= 0.0:
            sequence = self._sequence = self._sequence + 1
            entry = [self._now + delay, priority, sequence, callback, args]
            heappush(self._queue, entry)
            return entry
        raise ConfigError("delay", "must be >= 0: events cannot be scheduled in the past", delay)

    def at(
        self, time: float, callback: Callable[..., Any], *args: Any, priority: int = 0
    ) -> list[Any]:
        """Run ``callback(*args)`` at absolute virtual ``time`` (not before now)."""
        return self.schedule(time - self._now, callback, *args, priority=priority)

    @staticmethod
    def cancel(handle: list[Any]) -> None:
        """Cancel a scheduled callback; cancelling twice or after it ran has no effect."""
        handle[3] = None

    def pending(self) -> int:
        """Entries in the queue, cancelled ones included."""
        return len(self._queue)

    def peek(self) -> float:
        """The time of the next entry, or infinity if the queue is empty."""
        return self._queue[0][0] if self._queue else math.inf

    # -- processes and events ---------------------------------------------------------------

    def event(self) -> Event:
        """A new untriggered :class:`Event`."""
        return Event(self)

    def timeout(self, delay: float, value: Any = None) -> Event:
        """An event that succeeds with ``value`` after ``delay`` seconds."""
        event = Event(self)
        self.schedule(delay, event.succeed, value)
        return event

    def process(self, generator: ProcessGenerator) -> Process:
        """Start a process now (its first step runs as a scheduled event, in order)."""
        return Process(self, generator)

    def any_of(self, events: Iterable[Event]) -> AnyOf:
        """An event that succeeds with the first of ``events`` to trigger (``(event, value)``)."""
        return AnyOf(self, events)

    # -- running ----------------------------------------------------------------------------

    def run(self, until: float = math.inf) -> float:
        """Run events up to and including time ``until`` (default: until the queue is empty).

        With a finite ``until`` the clock ends at ``until`` even if the queue empties earlier
        (a run to a horizon always ends at the horizon); without it, at the last event's time.
        Returns that time.
        """
        queue = self._queue
        hasher = self._hasher
        limit = self.max_events
        if hasher is None and limit is None and self.trace_log is None:
            # The hot loop: no bookkeeping beyond what ordering needs.
            ran = 0
            while queue:
                entry = heappop(queue)
                time, _, _, callback, args = entry
                if time > until:
                    heappush(queue, entry)
                    break
                if callback is not None:
                    self._now = time
                    ran += 1
                    # Most callbacks take no arguments; a plain call is cheaper than unpacking
                    # an empty tuple.
                    if args:
                        callback(*args)
                    else:
                        callback()
            self.events_run += ran
        else:
            self._run_observed(until)
        if until != math.inf and self._now < until:
            self._now = until
        return self._now

    def _run_observed(self, until: float) -> None:
        # The trace is hashed in batches: event times and callback-name ids are appended to
        # arrays and folded into the hash every few thousand events, which costs far less than
        # a hash update per event.
        queue = self._queue
        times = self._trace_times
        codes = self._trace_codes
        ids = self._name_ids
        log = self.trace_log
        limit = self.max_events if self.max_events is not None else -1
        ran = self.events_run
        while queue:
            entry = heappop(queue)
            time, priority, _, callback, args = entry
            if time > until:
                heappush(queue, entry)
                break
            if callback is None:
                continue
            if ran == limit:
                heappush(queue, entry)  # not run: it stays pending
                self.events_run = ran
                raise SimulationLimitExceeded(
                    f"stopped after {limit} events at t={self._now:.6g} s: the model did not "
                    "settle within max_events"
                )
            self._now = time
            ran += 1
            try:
                name = callback.__qualname__
            except AttributeError:  # partials and other callable objects
                name = type(callback).__qualname__
            code = ids.get(name)
            if code is None:
                code = ids[name] = len(ids)
            times.append(time)
            codes.append(code)
            if log is not None:
                log.append((time, priority, name))
            if len(times) >= 4096:
                self.events_run = ran
                self._flush_trace()
            if args:
                callback(*args)
            else:
                callback()
        self.events_run = ran

    def _flush_trace(self) -> None:
        if self._hasher is not None:
            times, codes = self._trace_times, self._trace_codes
            if _BIG_ENDIAN:
                times, codes = array("d", times), array("q", codes)
                times.byteswap()
                codes.byteswap()
            self._hasher.update(times.tobytes())
            self._hasher.update(codes.tobytes())
        del self._trace_times[:]
        del self._trace_codes[:]

    def trace_hash(self) -> str:
        """Hex digest of every event run so far: its time and callback name, in order.

        Identical for the same model and seed in any process, on any little- or big-endian
        machine with IEEE floats, and under any ``PYTHONHASHSEED``; empty string when hashing
        was turned off.
        """
        if self._hasher is None:
            return ""
        self._flush_trace()
        digest = self._hasher.copy()
        digest.update("\n".join(self._name_ids).encode())
        return digest.hexdigest()


class Event:
    """Something that happens once, with a value; processes wait for it by yielding it."""

    __slots__ = ("_callbacks", "ok", "sim", "triggered", "value")

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.triggered = False
        self.ok = True
        self.value: Any = None
        self._callbacks: list[Callable[[Event], None]] | None = []

    def add_callback(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` when the event triggers (at once, scheduled, if it has)."""
        if self._callbacks is None:
            self.sim.schedule(0.0, callback, self)
        else:
            self._callbacks.append(callback)

    def remove_callback(self, callback: Callable[[Event], None]) -> None:
        """Forget a callback added earlier (no effect if absent or already run)."""
        if self._callbacks is not None and callback in self._callbacks:
            self._callbacks.remove(callback)

    def succeed(self, value: Any = None) -> Event:
        """Trigger the event with ``value`` now; waiters run in the order they started waiting."""
        self._trigger(True, value)
        return self

    def fail(self, error: BaseException) -> Event:
        """Trigger the event with an error, which is thrown into waiting processes."""
        self._trigger(False, error)
        return self

    def _trigger(self, ok: bool, value: Any) -> None:
        if self.triggered:
            raise StormproofError("an event can trigger only once")
        self.triggered = True
        self.ok = ok
        self.value = value
        callbacks = self._callbacks
        self._callbacks = None
        if callbacks:
            for callback in callbacks:
                callback(self)


class AnyOf(Event):
    """Triggers like the first of its events: ``(event, value)`` on success, or its error.

    Waiting processes receive ``(event, value)`` or have the first event's error thrown in.
    """

    __slots__ = ("_events",)

    def __init__(self, sim: Simulation, events: Iterable[Event]) -> None:
        super().__init__(sim)
        self._events = list(events)
        if not self._events:
            raise ConfigError("events", "any_of needs at least one event")
        for event in self._events:
            if event.triggered:
                self._first(event)
                return
        for event in self._events:
            event.add_callback(self._first)

    def _first(self, event: Event) -> None:
        if self.triggered:
            return
        for other in self._events:
            if other is not event:
                other.remove_callback(self._first)
        if event.ok:
            self.succeed((event, event.value))
        else:
            self.fail(event.value)  # the first event failed: waiters see its error


class Process(Event):
    """A generator-based process; as an event, it triggers with the generator's return value.

    The generator yields a number (sleep that many seconds) or an :class:`Event` (wait for it;
    the ``yield`` expression evaluates to the event's value, or raises its error).
    """

    __slots__ = ("_generator", "_waiting_on", "_wakeup")

    def __init__(self, sim: Simulation, generator: ProcessGenerator) -> None:
        super().__init__(sim)
        self._generator = generator
        self._waiting_on: Event | None = None
        self._wakeup: list[Any] | None = sim.schedule(0.0, self._step, None, None)

    @property
    def alive(self) -> bool:
        """Whether the generator has not finished yet."""
        return not self.triggered

    def interrupt(self, cause: Any = None) -> None:
        """Throw :class:`Interrupt` into the process at the current time (cancels its wait)."""
        if self.triggered:
            return
        if self._wakeup is not None:
            Simulation.cancel(self._wakeup)
        if self._waiting_on is not None:
            self._waiting_on.remove_callback(self._on_event)
            self._waiting_on = None
        self._wakeup = self.sim.schedule(0.0, self._step, None, Interrupt(cause))

    def _on_event(self, event: Event) -> None:
        self._waiting_on = None
        if event.ok:
            self._step(event.value, None)
        else:
            self._step(None, event.value)

    def _step(self, value: Any, error: BaseException | None) -> None:
        self._wakeup = None
        try:
            target = self._generator.send(value) if error is None else self._generator.throw(error)
        except StopIteration as stop:
            self.succeed(stop.value)
            return
        except BaseException as exc:
            if self._callbacks:
                self.fail(exc)
                return
            raise
        if isinstance(target, Event):
            self._waiting_on = target
            target.add_callback(self._on_event)
        else:
            self._wakeup = self.sim.schedule(target, self._step, None, None)
