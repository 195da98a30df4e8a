"""stormproof's demo: one retry policy, three questions, no real waiting.

1. What schedule does a retry policy follow? (a flaky call, on a manual clock)
2. What do the presets people already run look like? (AWS SDK standard, legacy, Step Functions)
3. What does a retry budget change in an outage? (10,000 calls against a dead dependency)
"""

from __future__ import annotations

import contextlib
import random

from stormproof import ManualClock, RetryError, RetryEvent, Retrying, RetryPolicy
from stormproof.policies import AwsRetryQuota, Exponential, RatioBudget, presets
from stormproof.testing import instant_sleeps


def flaky_call_schedule() -> None:
    print("1. A call that fails three times, then succeeds (exponential backoff, full jitter)")
    clock = ManualClock()
    failures_left = 3

    def fetch() -> str:
        nonlocal failures_left
        if failures_left:
            failures_left -= 1
            raise ConnectionError("connection reset by peer")
        return "200 OK"

    def show(event: RetryEvent) -> None:
        print(
            f"   t={clock.now():7.3f} s  attempt {event.attempt} failed "
            f"({type(event.error).__name__}); waiting {event.delay:.3f} s"
        )

    policy = RetryPolicy(
        max_attempts=5, backoff=Exponential(base=0.2, cap=5.0), rng=random.Random(1)
    )
    result = Retrying(policy, clock=clock, on_retry=show).call(fetch)
    print(f"   t={clock.now():7.3f} s  attempt 4 returned {result!r}\n")


def preset_schedules() -> None:
    print("2. Delays before each retry, seed 7, for presets users already run")
    rows = {
        "aws_sdk_standard()": presets.aws_sdk_standard(rng=7),
        'aws_sdk_standard("2026")': presets.aws_sdk_standard("2026", rng=7),
        "aws_sdk_legacy()": presets.aws_sdk_legacy(rng=7),
        "step_functions(jitter=NONE)": presets.step_functions(max_attempts=4, rng=7),
        "stormproof default()": presets.default(rng=7),
    }
    for name, policy in rows.items():
        call = policy.start(0.0)
        delays = []
        while True:
            decision = call.on_failure(0.0, ConnectionError())
            if not hasattr(decision, "delay"):
                break
            delays.append(f"{decision.delay:6.3f}")
        print(f"   {name:<29} {' '.join(delays)}  (then {decision.reason.value})")
    print()


def outage_amplification() -> None:
    print("3. 10,000 calls, 100 per second for 100 s, against a dependency that is down")
    for name, policy in {
        "3 attempts, no budget": RetryPolicy(max_attempts=3, rng=random.Random(3)),
        "+ ratio budget (Finagle)": RetryPolicy(
            max_attempts=3, budget=RatioBudget(), rng=random.Random(3)
        ),
        "+ AWS SDK retry quota": RetryPolicy(
            max_attempts=3, budget=AwsRetryQuota(), rng=random.Random(3)
        ),
    }.items():
        clock = ManualClock()
        attempts = 0

        def down() -> None:
            nonlocal attempts
            attempts += 1
            raise ConnectionError("dependency down")

        retrying = Retrying(policy, clock=clock)
        # Calls arrive every 10 ms; their sleeps are skipped so that only arrivals move time.
        with instant_sleeps():
            for i in range(10_000):
                clock.advance(i / 100 - clock.now())
                with contextlib.suppress(RetryError):
                    retrying.call(down)
        print(f"   {name:<27} {attempts:6d} attempts ({attempts / 10_000:.2f} per call)")


if __name__ == "__main__":
    flaky_call_schedule()
    preset_schedules()
    outage_amplification()
