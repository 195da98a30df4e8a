"""The REL 2 travel booking, durable: as an ASL state machine and as a Python saga.

Reserve-Flight, then Allocate-Seat with three retries one second apart; when the seat still
cannot be had, Refund-Flight undoes the reservation, and the failed booking goes to the
dead-letter queue with its history. Both versions run on one SQLite file and a manual clock
(the retry delays take no real time), one booking that succeeds and one that is compensated:

    python examples/travel_booking.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from stormproof.clock import ManualClock
from stormproof.policies import presets
from stormproof.workflows.asl.local import TaskRegistry
from stormproof.workflows.durable import Workflows, current_step, step
from stormproof.workflows.engine import Engine
from stormproof.workflows.saga import saga

DEFINITION = Path(__file__).with_name("travel_booking.asl.json")
SOLD_OUT = {"LH-404"}  # flights with no seat left: Allocate-Seat always fails for them


class SeatUnavailable(Exception):
    """No seat left on the flight."""


# -- the side effects, shared by both versions -----------------------------------------------


def reserve_flight(trip: dict[str, Any]) -> dict[str, Any]:
    print(f"    Reserve-Flight  {trip['flight']} for {trip['passenger']}")
    return {"reservation": f"R-{trip['passenger']}-{trip['flight']}", "flight": trip["flight"]}


def allocate_seat(flight: dict[str, Any]) -> dict[str, Any]:
    info = current_step()
    attempt = info.attempt if info else 1
    if flight["flight"] in SOLD_OUT:
        print(f"    Allocate-Seat   {flight['flight']}: attempt {attempt} failed, sold out")
        raise SeatUnavailable(f"no seat left on {flight['flight']}")
    print(f"    Allocate-Seat   {flight['flight']}: seat 12A")
    return {"seat": "12A"}


def refund_flight(flight: dict[str, Any]) -> dict[str, Any]:
    print(f"    Refund-Flight   {flight['reservation']}")
    return {"refunded": flight["reservation"]}


# -- version 1: the ASL state machine --------------------------------------------------------

tasks = TaskRegistry()
tasks.register("Reserve-Flight", lambda event: reserve_flight(event))
tasks.register("Allocate-Seat", lambda event: allocate_seat(event["flight"]))
tasks.register("Refund-Flight", lambda event: refund_flight(event["flight"]))

# -- version 2: a Python saga ----------------------------------------------------------------

app = Workflows()
refund = step(name="Refund-Flight", retry=presets.step_functions(1.0, 5, 2.0, rng=1))(refund_flight)
reserve = step(name="Reserve-Flight", compensate=refund)(reserve_flight)
allocate = step(name="Allocate-Seat", retry=presets.step_functions(1.0, 3, 1.0, rng=1))(
    allocate_seat
)


@app.workflow("book-trip")
def book_trip(trip: dict[str, Any]) -> dict[str, Any]:
    with saga():
        flight = reserve(trip)
        seat = allocate(flight)
    return {"flight": flight, "seat": seat}


def main() -> int:
    clock = ManualClock(1_700_000_000.0)  # epoch-like, so timers look like real times
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.open(f"sqlite:///{tmp}/travel.db", tasks=tasks, workflows=app, clock=clock)
        trips = [
            {"passenger": "ada", "flight": "BA-117"},
            {"passenger": "alan", "flight": "LH-404"},
        ]
        definition = DEFINITION.read_text()
        for trip in trips:
            for kind in ("asl", "python"):
                name = f"{kind}-{trip['passenger']}"
                print(f"{name}: booking {trip['flight']}")
                started = clock.now()
                if kind == "asl":
                    engine.start_machine(definition, trip, name=name)
                else:
                    engine.start(book_trip, trip, name=name)
                execution = engine.run(name)
                took = clock.now() - started
                print(f"  -> {execution.status.value} after {took:g} s of (manual) time", end="")
                print(f": {execution.error}" if execution.error else "")
                kinds = [e.type for e in engine.history(name)]
                print(f"  history: {len(kinds)} events, " + ", ".join(sorted(set(kinds))))
        assert engine.dlq is not None
        dead = engine.dlq.peek(engine.config.dlq_queue, 10)
        print(f"dead-letter queue {engine.config.dlq_queue}: {len(dead)} failed booking(s)")
        for message in dead:
            body = json.loads(message.body)
            print(f"  {body['execution']}: {body['error']} ({len(body['history'])} history events)")
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
