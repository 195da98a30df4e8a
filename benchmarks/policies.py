"""Per-call overhead of stormproof's retry wrappers and per-decision cost of its protection policies.

    python benchmarks/policies.py            # table (rich if installed, plain otherwise)
    python benchmarks/policies.py --json     # only a JSON list of rows, for scripts and tests
    python benchmarks/policies.py --quick    # fewer, shorter loops (a smoke test, not a result)

Every number is an *overhead*: nanoseconds per call of ``for _ in range(n): wrapped()``, minus
the same loop around the bare, undecorated function (the median of several repeats each, timed
with ``time.perf_counter_ns``; the garbage collector is off inside a timed loop and run between
loops, as ``timeit`` does). Cases:

* ``sync_success`` / ``async_success`` -- the wrapped function returns at once;
* ``sync_fail_once`` / ``async_fail_once`` -- the function raises ``ConnectionError`` on every
  odd call and succeeds on the next, so one measured call is a failure, a retry decision and a
  successful second attempt. The baseline is the bare function with a hand-written retry
  (``try: f() except ConnectionError: f()``). All sleeps are disabled:

  - stormproof: ``stormproof.testing.instant_sleeps()`` -- its documented test switch; the
    policy still computes the jittered exponential delay and only the waiting is skipped;
  - tenacity: ``sleep=`` a no-op (the ``wait_random_exponential`` delay is still computed);
  - stamina: ``stamina.set_testing(True, attempts=3)`` -- stamina's test switch. Its backoff
    becomes 0 but tenacity still calls ``time.sleep(0)`` / ``asyncio.sleep(0)``;
  - backoff: ``backoff.constant`` with ``interval=0, jitter=None`` (as suggested for it); it
    still calls ``time.sleep(0)`` / ``asyncio.sleep(0)``.

  The cost of those zero sleeps on this machine is printed with the table.
* ``decision`` -- stormproof's sans-IO core alone: ``policy.start(now)`` followed by
  ``call.on_failure(now, error)``, with ``now`` and ``error`` prepared outside the loop; the
  baseline is the empty loop. No peer has a separable decision step.

Policies are comparable: 3 attempts, retry on ``ConnectionError``, exponential backoff with full
jitter from 0.1 s capped at 20 s where the library has it, no total timeout (stamina's default
45 s timeout is turned off), no hooks (stamina's default retry logging hook is turned off; it
would write a warning per retry). stormproof is measured in two variants:

* ``default`` -- ``@stormproof.retry(on=ConnectionError, attempts=3)``, which carries the default
  :class:`~stormproof.policies.budget.RatioBudget`. In the fail-once and decision cases every
  call retries, which the default budget (20 % of requests + 10/s) correctly refuses after about
  125 calls, so there the variant uses ``RatioBudget(ratio=1.0)``: the same code path and
  bookkeeping, a balance that never runs out;
* ``no_budget`` -- the same with ``budget=None``.

Sans-IO protection policies (circuit breaker, bulkhead, rate limiters, admission control) are
measured per decision: ours is the decision call(s) alone in a loop that advances a simulated
clock by ``TICK`` (1 microsecond) per iteration and passes it as ``now``; the baseline is the same
loop without the call. stormproof's policies read no clock and take no lock (the driver holds
both), whereas every peer below reads the time itself and most take a lock; the cost of one
``time.monotonic()`` here is printed with the table. Cases, and what each peer is:

* ``breaker_allow_record`` -- ``CircuitBreaker().allow(now)`` then ``record(now, success=True)``
  on a closed breaker (default config: count window of 100 calls, full after 100). Peers:
  ``pybreaker`` -- ``CircuitBreaker().call(f)`` minus a bare ``f()``; ``aiobreaker`` --
  ``await CircuitBreaker().call_async(af)`` minus a bare ``await af()``.
* ``breaker_open_reject`` -- ``allow(now)`` on a breaker forced open (``open_duration`` long
  enough to stay open). Peer ``pybreaker``: calling an opened breaker and catching its
  ``CircuitBreakerError`` (baseline: the empty loop).
* ``bulkhead_acquire_release`` -- ``Bulkhead(10).acquire(now)`` then ``release(now)``. No peer
  library; the floor is the standard library's ``threading.BoundedSemaphore``
  acquire + release (peer name ``threading.Semaphore``) and ``await asyncio.Semaphore.acquire()``
  + ``release()`` (``asyncio.Semaphore``, in an event loop, minus an empty async loop).
* ``token_bucket_acquire`` / ``gcra_acquire`` -- ``TokenBucket(1e7/s, burst 1000).acquire(now)``
  and the same for ``GCRA``: 10 tokens refill per tick, so every call is granted (checked after
  timing). Peers, each with a limit far above what the loop can spend, also all granted:
  ``limits`` -- ``FixedWindowRateLimiter(MemoryStorage()).hit(item)`` for 10**9 per second (its
  moving window is left out: its memory storage inserts at the front of a list of every hit in
  the window, so its cost grows with the limit); ``pyrate-limiter`` --
  ``Limiter(InMemoryBucket([Rate(10**9, SECOND)])).try_acquire(name, blocking=False)``, its
  default in-memory (sliding log) bucket; ``pyrate-limiter/state`` -- the same ``Limiter`` over
  ``StateBucket([Rate(10**6, SECOND, burst=10**9)], algorithm=TokenBucket())`` (``GCRA()`` for
  ``gcra_acquire``), its constant-state algorithm of the same name.
* ``admission_*`` (only when ``stormproof.policies.admission`` is importable), no peer:
  ``queue_limit`` -- ``QueueLimit(100).admit(now, 10)``; ``queue_rate`` --
  ``QueueRate(100, rate=1e7, burst=1000).admit(now, 75)``, in its throttled zone so a token is
  taken (and granted) every call; ``priority`` -- ``PriorityShedder.sync_first().admit(now,
  "async", 0.5)``; ``codel_dequeue`` -- ``CoDel().on_dequeue(now, enqueued_at, False)`` with a 1
  ms sojourn (below target: the normal path); ``codel_dequeue_standing`` -- the same with a 50 ms
  sojourn, so CoDel is in its dropping state and drops on its schedule;
  ``adaptive_throttle`` -- ``AdaptiveThrottle().allow(now, rng)`` then ``record(now, True)``.

The stated target for these is under 0.5 microseconds per case as measured (for the two-call
cases, ``allow`` + ``record`` and ``acquire`` + ``release`` together).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiobreaker
import backoff
import limits
import limits.storage
import limits.strategies
import pybreaker
import pyrate_limiter
import stamina
import stamina.instrumentation
import tenacity

import stormproof
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.policies.breaker import BreakerConfig, CircuitBreaker
from stormproof.policies.budget import RatioBudget
from stormproof.policies.bulkhead import ADMITTED, Bulkhead
from stormproof.policies.ratelimit import GCRA, GRANTED, TokenBucket
from stormproof.testing import instant_sleeps

try:  # Admission control is newer than this benchmark; its cases run when it is there.
    from stormproof.policies import admission
except ImportError:  # pragma: no cover - depends on the checkout
    admission = None  # type: ignore[assignment]

CASES = ("sync_success", "sync_fail_once", "async_success", "async_fail_once")
VARIANTS = ("default", "no_budget")
PEERS = ("tenacity", "stamina", "backoff")
DECISION = "decision"

ATTEMPTS = 3
SEED = 20260101

Runner = Callable[[Callable[[], Any], int], None]
AsyncRunner = Callable[[Callable[[], Awaitable[Any]], int], Awaitable[None]]
ContextFactory = Callable[[], contextlib.AbstractContextManager[Any]]


# --------------------------------------------------------------------------------------------
# Loops. Every subject of a case runs in the same loop, so the loop's own cost cancels out.


def run_calls(fn: Callable[[], Any], n: int) -> None:
    for _ in range(n):
        fn()


def run_manual_retry(fn: Callable[[], Any], n: int) -> None:
    for _ in range(n):
        try:
            fn()
        except ConnectionError:
            fn()


def run_empty(fn: Callable[[], Any], n: int) -> None:
    for _ in range(n):
        pass


async def arun_calls(fn: Callable[[], Awaitable[Any]], n: int) -> None:
    for _ in range(n):
        await fn()


async def arun_manual_retry(fn: Callable[[], Awaitable[Any]], n: int) -> None:
    for _ in range(n):
        try:
            await fn()
        except ConnectionError:
            await fn()


# --------------------------------------------------------------------------------------------
# Functions under test.


def ok() -> int:
    return 1


async def aok() -> int:
    return 1


def make_flaky() -> Callable[[], int]:
    """A function that raises ConnectionError on calls 1, 3, 5, ... and returns on 2, 4, ..."""
    fails = itertools.cycle((True, False)).__next__

    def flaky() -> int:
        if fails():
            raise ConnectionError("flaky")
        return 1

    return flaky


def make_aflaky() -> Callable[[], Awaitable[int]]:
    fails = itertools.cycle((True, False)).__next__

    async def aflaky() -> int:
        if fails():
            raise ConnectionError("flaky")
        return 1

    return aflaky


def never_exhausted_budget() -> RatioBudget:
    """The default budget's class and code path, with a balance that 100 % retries cannot drain."""
    return RatioBudget(ratio=1.0)


def ours(fn: Any, variant: str, *, retries_every_call: bool) -> Any:
    """``@stormproof.retry(on=ConnectionError, attempts=3)``, per variant (see module doc)."""
    if variant == "no_budget":
        return stormproof.retry(on=ConnectionError, attempts=ATTEMPTS, budget=None, rng=SEED)(fn)
    if retries_every_call:
        return stormproof.retry(
            on=ConnectionError, attempts=ATTEMPTS, budget=never_exhausted_budget(), rng=SEED
        )(fn)
    return stormproof.retry(on=ConnectionError, attempts=ATTEMPTS, rng=SEED)(fn)


def _no_sleep(seconds: float) -> None:
    return None


async def _ano_sleep(seconds: float) -> None:
    return None


def with_tenacity(fn: Any, *, is_async: bool) -> Any:
    return tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=20),
        sleep=_ano_sleep if is_async else _no_sleep,
        reraise=True,
    )(fn)


def with_stamina(fn: Any) -> Any:
    return stamina.retry(
        on=ConnectionError,
        attempts=ATTEMPTS,
        timeout=None,
        wait_initial=0.1,
        wait_max=20.0,
        wait_jitter=0.1,
    )(fn)


def with_backoff(fn: Any, *, fail_once: bool) -> Any:
    if fail_once:
        return backoff.on_exception(
            backoff.constant, ConnectionError, max_tries=ATTEMPTS, interval=0, jitter=None
        )(fn)
    return backoff.on_exception(
        backoff.expo,
        ConnectionError,
        max_tries=ATTEMPTS,
        factor=0.1,
        max_value=20,
        jitter=backoff.full_jitter,
    )(fn)


def stamina_testing() -> contextlib.AbstractContextManager[Any]:
    return stamina.set_testing(True, attempts=ATTEMPTS)


# --------------------------------------------------------------------------------------------
# Measurement.


@dataclass
class Subject:
    """One thing to time in a case: the baseline, a stormproof variant or a peer."""

    name: str
    fn: Any
    runner: Any
    context: ContextFactory = contextlib.nullcontext


@dataclass(frozen=True)
class Settings:
    repeats: int
    target_ns: int  # how long one timed loop should take


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_sync(subject: Subject, n: int) -> int:
    with subject.context(), gc_paused():
        start = time.perf_counter_ns()
        subject.runner(subject.fn, n)
        return time.perf_counter_ns() - start


async def time_async(subject: Subject, n: int) -> int:
    with subject.context(), gc_paused():
        start = time.perf_counter_ns()
        await subject.runner(subject.fn, n)
        return time.perf_counter_ns() - start


def loop_size(elapsed_ns: int, n: int, target_ns: int) -> int:
    return max(1, round(n * target_ns / max(elapsed_ns, 1)))


def calibrate_sync(subject: Subject, target_ns: int) -> int:
    """Grow ``n`` until a loop takes a tenth of the target, then scale to the target."""
    n = 1
    while True:
        elapsed = time_sync(subject, n)
        if elapsed >= target_ns // 10:
            return loop_size(elapsed, n, target_ns)
        n *= 4


async def calibrate_async(subject: Subject, target_ns: int) -> int:
    n = 1
    while True:
        elapsed = await time_async(subject, n)
        if elapsed >= target_ns // 10:
            return loop_size(elapsed, n, target_ns)
        n *= 4


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_sync(subjects: list[Subject], settings: Settings) -> dict[str, float]:
    """Median ns per call of each subject; the repeats are interleaved to share any drift."""
    sizes = {s.name: calibrate_sync(s, settings.target_ns) for s in subjects}
    samples: dict[str, list[float]] = {s.name: [] for s in subjects}
    for _ in range(settings.repeats):
        for subject in subjects:
            n = sizes[subject.name]
            samples[subject.name].append(time_sync(subject, n) / n)
            gc.collect()
    return medians(samples)


async def measure_async(subjects: list[Subject], settings: Settings) -> dict[str, float]:
    sizes = {s.name: await calibrate_async(s, settings.target_ns) for s in subjects}
    samples: dict[str, list[float]] = {s.name: [] for s in subjects}
    for _ in range(settings.repeats):
        for subject in subjects:
            n = sizes[subject.name]
            samples[subject.name].append(await time_async(subject, n) / n)
            gc.collect()
    return medians(samples)


# --------------------------------------------------------------------------------------------
# Cases.


def sync_subjects(fail_once: bool) -> list[Subject]:
    target = make_flaky if fail_once else (lambda: ok)
    runner = run_calls
    ours_context: ContextFactory = instant_sleeps if fail_once else contextlib.nullcontext
    subjects = [
        Subject("bare", target(), run_manual_retry if fail_once else run_calls),
        *(
            Subject(
                f"ours/{variant}",
                ours(target(), variant, retries_every_call=fail_once),
                runner,
                ours_context,
            )
            for variant in VARIANTS
        ),
        Subject("tenacity", with_tenacity(target(), is_async=False), runner),
        Subject(
            "stamina",
            with_stamina(target()),
            runner,
            stamina_testing if fail_once else contextlib.nullcontext,
        ),
        Subject("backoff", with_backoff(target(), fail_once=fail_once), runner),
    ]
    return subjects


def async_subjects(fail_once: bool) -> list[Subject]:
    target = make_aflaky if fail_once else (lambda: aok)
    runner = arun_calls
    ours_context: ContextFactory = instant_sleeps if fail_once else contextlib.nullcontext
    return [
        Subject("bare", target(), arun_manual_retry if fail_once else arun_calls),
        *(
            Subject(
                f"ours/{variant}",
                ours(target(), variant, retries_every_call=fail_once),
                runner,
                ours_context,
            )
            for variant in VARIANTS
        ),
        Subject("tenacity", with_tenacity(target(), is_async=True), runner),
        Subject(
            "stamina",
            with_stamina(target()),
            runner,
            stamina_testing if fail_once else contextlib.nullcontext,
        ),
        Subject("backoff", with_backoff(target(), fail_once=fail_once), runner),
    ]


def decision_subjects() -> list[Subject]:
    now = 1000.0
    error = ConnectionError("flaky")
    subjects = [Subject("bare", None, run_empty)]
    for variant in VARIANTS:
        policy = stormproof.RetryPolicy(
            max_attempts=ATTEMPTS,
            retry_on=ConnectionError,
            backoff=Exponential(base=0.1, factor=2.0, cap=20.0, jitter=Jitter.FULL),
            budget=None if variant == "no_budget" else never_exhausted_budget(),
            rng=random.Random(SEED),
        )
        subjects.append(Subject(f"ours/{variant}", policy.start, _decision_runner(now, error)))
    return subjects


def _decision_runner(now: float, error: BaseException) -> Runner:
    def run_decisions(start: Callable[[float], Any], n: int) -> None:
        for _ in range(n):
            start(now).on_failure(now, error)

    return run_decisions


def zero_sleep_costs(settings: Settings) -> dict[str, float]:
    """What ``time.sleep(0)`` and ``await asyncio.sleep(0)`` cost here (paid by some peers)."""
    sync = measure_sync(
        [
            Subject("bare", ok, run_calls),
            Subject("sleep0", lambda: time.sleep(0), run_calls),
        ],
        settings,
    )

    async def asleep0() -> None:
        await asyncio.sleep(0)

    async def both() -> dict[str, float]:
        return await measure_async(
            [Subject("bare", aok, arun_calls), Subject("sleep0", asleep0, arun_calls)], settings
        )

    aio = asyncio.run(both())
    return {
        "time.sleep(0)": sync["sleep0"] - sync["bare"],
        "asyncio.sleep(0)": aio["sleep0"] - aio["bare"],
    }


def overheads(per_call: dict[str, float]) -> dict[str, float]:
    bare = per_call["bare"]
    return {name: ns - bare for name, ns in per_call.items() if name != "bare"}


def run_all(settings: Settings) -> dict[str, dict[str, float]]:
    """Overhead in ns per call for every case, keyed by case then subject."""
    stamina.instrumentation.set_on_retry_hooks([])
    results: dict[str, dict[str, float]] = {}
    results["sync_success"] = overheads(measure_sync(sync_subjects(False), settings))
    results["sync_fail_once"] = overheads(measure_sync(sync_subjects(True), settings))

    async def async_cases() -> None:
        # Both async cases run in this one event loop.
        success = await measure_async(async_subjects(False), settings)
        results["async_success"] = overheads(success)
        fail_once = await measure_async(async_subjects(True), settings)
        results["async_fail_once"] = overheads(fail_once)

    asyncio.run(async_cases())
    results[DECISION] = overheads(measure_sync(decision_subjects(), settings))
    return results


def rows(results: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for case in CASES:
        for variant in VARIANTS:
            ours_ns = results[case][f"ours/{variant}"]
            for peer in PEERS:
                peer_ns = results[case][peer]
                out.append(
                    {
                        "case": f"{case}/{variant}",
                        "ours_ns": round(ours_ns, 1),
                        "peer": peer,
                        "peer_ns": round(peer_ns, 1),
                        "ratio": ours_ns / peer_ns,
                    }
                )
    for variant in VARIANTS:
        out.append(
            {
                "case": f"{DECISION}/{variant}",
                "ours_ns": round(results[DECISION][f"ours/{variant}"], 1),
                "peer": "none",
                "peer_ns": None,
                "ratio": None,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Reporting.


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "versions": ", ".join(
            f"{name} {version(name)}" for name in ("stormproof", "tenacity", "stamina", "backoff")
        ),
    }


def target_checks(results: dict[str, dict[str, float]]) -> list[tuple[str, bool, str]]:
    checks = []
    for case in ("sync_success", "async_success"):
        peer = results[case]["tenacity"]
        for variant in VARIANTS:
            ns = results[case][f"ours/{variant}"]
            checks.append(
                (
                    f"{case}/{variant} <= tenacity / 10",
                    ns <= peer / 10,
                    f"{ns:.0f} ns vs {peer / 10:.0f} ns (ratio {ns / peer:.3f})",
                )
            )
    for variant in VARIANTS:
        ns = results[DECISION][f"ours/{variant}"]
        checks.append((f"{DECISION}/{variant} < 1 us", ns < 1000, f"{ns:.0f} ns"))
    return checks


def fmt_ns(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_report(
    table: list[dict[str, Any]],
    results: dict[str, dict[str, float]],
    sleeps: dict[str, float],
    settings: Settings,
) -> None:
    info = machine_info()
    header = ("case", "ours_ns", "peer", "peer_ns", "ratio")
    cells = [
        (r["case"], fmt_ns(r["ours_ns"]), r["peer"], fmt_ns(r["peer_ns"]), fmt_ratio(r["ratio"]))
        for r in table
    ]
    notes = [
        f"overhead = ns/call minus the bare function's; median of {settings.repeats} repeats",
        "ratio = ours / peer (below 1: stormproof adds less)",
        "zero sleeps still paid by stamina/backoff (and not by stormproof/tenacity): "
        + ", ".join(f"{name} = {ns:,.0f} ns" for name, ns in sleeps.items()),
    ]
    checks = target_checks(results)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(c)) for c in col) for col in zip(header, *cells, strict=True)]
        for name, value in info.items():
            print(f"{name:>9}: {value}")
        print()
        for line in (header, *cells):
            print("  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True)))
        print()
        for note in notes:
            print(note)
        for label, ok_, detail in checks:
            print(f"{'PASS' if ok_ else 'FAIL'}  {label}: {detail}")
        return
    console = Console()
    for name, value in info.items():
        console.print(f"[bold]{name:>9}[/]: {value}")
    grid = Table(title="stormproof retry overhead vs peers (ns per call)")
    for i, name in enumerate(header):
        grid.add_column(name, justify="left" if i in (0, 2) else "right")
    previous = None
    for line in cells:
        if previous is not None and line[0] != previous:
            grid.add_section()
        previous = line[0]
        grid.add_row(*line)
    console.print(grid)
    for note in notes:
        console.print(note)
    for label, ok_, detail in checks:
        mark = "[green]PASS[/]" if ok_ else "[red]FAIL[/]"
        console.print(f"{mark}  {label}: {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only a JSON list of rows")
    parser.add_argument("--quick", action="store_true", help="few, short loops (smoke test)")
    args = parser.parse_args(argv)
    settings = (
        Settings(repeats=3, target_ns=2_000_000)
        if args.quick
        else Settings(repeats=7, target_ns=40_000_000)
    )
    results = run_all(settings)
    table = rows(results)
    if args.json:
        json.dump(table, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print_report(table, results, zero_sleep_costs(settings), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
