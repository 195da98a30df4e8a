"""simple-collapse: an open-loop retry storm that outlives its trigger (metastability).

The model of ``shared/golden/README.md`` (section simple-collapse, after M. Brooker's
simulation): Poisson arrivals at 40/s, 80/s during a spike; up to 3 attempts per request, each
timed out by the client after 3 s; a server whose work for a request takes
``1 s + 10 ms x concurrency`` and runs to completion even when the client has given up.

Why it sticks: latency diverges once offered attempts reach 100/s (1 / 0.01 s). A long enough
spike pushes latency past the 3 s timeout; then every request times out and is sent three times,
40/s x 3 = 120/s > 100/s, which keeps latency past the timeout -- a second stable state that
lasts after the spike is over. Backoff with jitter spreads the re-sends out enough to escape it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from stormproof.errors import ConfigError
from stormproof.policies.backoff import Exponential, Jitter, NoBackoff
from stormproof.policies.breaker import BreakerConfig, CircuitBreaker
from stormproof.policies.budget import RatioBudget
from stormproof.policies.retry import RetryPolicy
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.arrivals import PiecewisePoisson
from stormproof.sim.parts.client import OpenLoopClient
from stormproof.sim.parts.server import LinearSlowdown, Server
from stormproof.sim.scenario import Param, RunResult, Scenario
from stormproof.sim.stats import percentile

__all__ = ["SimpleCollapse"]

_GOLDEN = "shared/golden/README.md, simple-collapse"


class SimpleCollapse(Scenario):
    """Brooker's simple retry-collapse model, with and without backoff."""

    name = "simple-collapse"
    description = "Open-loop retry storm after a load spike (golden model, Brooker)"
    #: The first two are the golden model's; the others show stormproof's answers to the same
    #: storm without backoff: a shared retry budget, and a circuit breaker.
    policies = ("no_backoff", "backoff_full_jitter", "retry_budget", "circuit_breaker")
    stuck_rule = "mean successes per second over [late_start, horizon) below stuck_below"
    params = (
        Param("rate", 40, "new requests per second", f"{_GOLDEN}: 'Poisson arrivals at 40/s'", 0),
        Param("spike_rate", 80, "arrival rate during the spike", f"{_GOLDEN}: '80/s'", 0),
        Param("spike_start", 20, "spike start (s)", f"{_GOLDEN}: '[20 s, 20 s + spike)'", 0),
        Param("spike_s", 5, "spike duration (s)", f"{_GOLDEN}: swept 1..5 s", 0),
        Param("horizon", 80, "simulated seconds", f"{_GOLDEN}: 'Horizon 80 s'", 1),
        Param(
            "max_attempts",
            3,
            "attempts per request",
            f"{_GOLDEN}: '1 send + 2 re-sends'",
            1,
            integer=True,
        ),
        Param(
            "timeout", 3, "client timeout after a send (s)", f"{_GOLDEN}: '3 s after a send'", 0.001
        ),
        Param(
            "network_mean",
            0.1,
            "mean one-way latency (s), exponential",
            f"{_GOLDEN}: 'Exp(mean 0.1 s)'",
            0,
        ),
        Param("service_base", 1.0, "service time at no load (s)", f"{_GOLDEN}: '1.0 s'", 0),
        Param(
            "service_per_request",
            0.01,
            "added service time per concurrent request (s)",
            f"{_GOLDEN}: '0.01 s * concurrency'",
            0,
        ),
        Param(
            "backoff_b0",
            10,
            "backoff: b doubles before each re-send from b0, wait U(0, b)",
            f"{_GOLDEN}: 'b = 2 * b (b0 = 10 s)'",
            0.001,
        ),
        Param(
            "late_start",
            60,
            "start of the window judged for stuck (s)",
            f"{_GOLDEN}: 't in [60, 80)'",
            0,
        ),
        Param(
            "stuck_below",
            30,
            "stuck if late goodput is below this (successes/s)",
            f"{_GOLDEN}: 'below 30/s'",
            0,
        ),
    )

    def check(self, params: Mapping[str, float]) -> None:
        """The judged window must lie inside the horizon."""
        if params["late_start"] >= params["horizon"]:
            raise ConfigError("late_start", "must be < horizon", params["late_start"])

    def policy(self, name: str, params: Mapping[str, float]) -> RetryPolicy:
        """The retry policy called ``name`` for these parameters (a new object per run)."""
        self.check_policy(name)
        attempts = int(params["max_attempts"])
        if name == "backoff_full_jitter":
            # b doubles before each re-send starting from b0: the first re-send waits U(0, 2 b0).
            return RetryPolicy(
                max_attempts=attempts,
                backoff=Exponential(
                    base=2 * params["backoff_b0"], factor=2.0, cap=1.0e9, jitter=Jitter.FULL
                ),
            )
        if name == "retry_budget":
            # Finagle's defaults: retries may add 20 % of recent requests plus 10/s.
            return RetryPolicy(max_attempts=attempts, backoff=NoBackoff(), budget=RatioBudget())
        return RetryPolicy(max_attempts=attempts, backoff=NoBackoff())

    def breaker(self, name: str) -> CircuitBreaker | None:
        """The circuit breaker of policy ``name``, if it has one (a new object per run)."""
        if name != "circuit_breaker":
            return None
        # A time window a little longer than the client timeout, opening at half the calls
        # failing, probing after 5 s (resilience4j's 50 %; Polly's 5 s break).
        return CircuitBreaker(
            BreakerConfig(
                window="time",
                window_size=5.0,
                minimum_calls=20,
                failure_rate_threshold=0.5,
                open_duration=5.0,
                half_open_probes=10,
            )
        )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the model once."""
        sim = Simulation(seed, max_events=self.max_events)
        metrics = BucketCounters(1.0)
        spike_end = params["spike_start"] + params["spike_s"]
        steps = [(0.0, params["rate"])]
        if params["spike_s"] > 0:
            spike = (params["spike_start"], params["spike_rate"])
            steps = [spike] if params["spike_start"] == 0 else [*steps, spike]
            steps.append((spike_end, params["rate"]))
        arrivals = PiecewisePoisson(steps)
        server = Server(sim, LinearSlowdown(params["service_base"], params["service_per_request"]))
        mean = params["network_mean"]
        client = OpenLoopClient(
            sim,
            arrivals,
            server,
            self.policy(policy, params),
            timeout=params["timeout"],
            network_latency=(lambda rng: rng.expovariate(1.0 / mean)) if mean > 0 else _zero,
            metrics=metrics,
            horizon=params["horizon"],
            breaker=self.breaker(policy),
        )
        client.start()
        horizon = params["horizon"]
        sim.run(until=horizon)
        late = params["late_start"]
        late_goodput = metrics.rate("successes", late, horizon)
        late_requests = metrics.rate("requests", late, horizon)
        late_attempts = metrics.rate("attempts", late, horizon)
        useful = metrics.total("useful_work")
        wasted = metrics.total("wasted_work")
        buckets = math.ceil(horizon)
        recovery = _recovery_time(
            metrics.series("successes", buckets), spike_end, params["stuck_below"]
        )
        result_metrics = {
            "late_goodput_per_s": late_goodput,
            "late_attempts_per_s": late_attempts,
            "amplification": late_attempts / late_requests if late_requests else math.nan,
            "wasted_work_fraction": wasted / (useful + wasted) if useful + wasted else 0.0,
            "time_to_recover_s": recovery,
            "recovered": 0.0 if math.isnan(recovery) else 1.0,
            "failures": metrics.total("failures"),
            "short_circuits": metrics.total("short_circuits"),
            "latency_p50_s": percentile(client.latencies, 0.50),
            "latency_p99_s": percentile(client.latencies, 0.99),
            "peak_concurrency": float(server.peak_in_service),
        }
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=late_goodput < params["stuck_below"],
            metrics=result_metrics,
            trace_hash=sim.trace_hash(),
            series={
                name: metrics.series(name, buckets)
                for name in (
                    "requests",
                    "attempts",
                    "successes",
                    "timeouts",
                    "resends",
                    "server.load",
                )
            }
            if series
            else {},
        )


def _zero(rng: object) -> float:
    return 0.0


def _recovery_time(successes: list[float], spike_end: float, healthy: float) -> float:
    """Seconds from the end of the spike to the start of the final healthy stretch.

    Healthy means the 5 s moving average of goodput is at least ``healthy`` successes/s, and it
    must stay so until the end of the run; NaN when the run ends unhealthy (it never recovered).
    """
    window = 5
    first = math.ceil(spike_end)
    last = len(successes) - window
    if last < first:
        return math.nan
    recovered_at = None
    for t in range(last, first - 1, -1):
        if sum(successes[t : t + window]) / window < healthy:
            break
        recovered_at = t
    return math.nan if recovered_at is None else float(recovered_at) - spike_end
