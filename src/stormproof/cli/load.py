"""``stormproof load run|export|plan``: burst load tests against HTTP targets.

Needs the ``load`` extra (httpx) for ``run``; ``export`` and ``plan`` need nothing more.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stormproof.cli._app import app
from stormproof.errors import ConfigError

load_app = typer.Typer(
    help="Burst load tests: seeded shapes, per-burst recovery, Locust/k6 export.",
    no_args_is_help=True,
)
app.add_typer(load_app, name="load")

ShapeOpt = Annotated[str, typer.Option("--shape", help="steady, ramp, spike, bursts or replay.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the shape, the arrivals and the bodies.")]
DurationOpt = Annotated[float, typer.Option(min=0.001, help="Seconds of load.")]
RateOpt = Annotated[
    float,
    typer.Option(
        min=0.0, help="Requests/s: steady rate, idle rate between bursts, base of a spike."
    ),
]
PeakOpt = Annotated[
    str, typer.Option(help="Burst or spike rate (requests/s): a number or a distribution.")
]
BurstOpt = Annotated[
    str, typer.Option(help="Burst length in s: 3, 1..4, exp:MEAN or exp:MEAN:LOW..HIGH.")
]
IdleOpt = Annotated[str, typer.Option(help="Idle gap in s between bursts (a distribution).")]
LeadInOpt = Annotated[
    str | None, typer.Option(help="Idle time before the first burst (default: an idle draw).")
]
TailOpt = Annotated[
    float, typer.Option(min=0.0, help="No burst starts in the last TAIL s (to see recovery).")
]
ReplayOpt = Annotated[
    Path | None, typer.Option(help="CSV of a recorded rate series, for --shape replay.")
]


def _fail(error: ConfigError) -> typer.Exit:
    Console(stderr=True).print("[red]error:[/red]", escape(str(error)))
    return typer.Exit(2)


def _plan(
    shape: str,
    seed: int,
    duration: float,
    rate: float,
    peak: str,
    burst: str,
    idle: str,
    lead_in: str | None,
    tail: float,
    replay: Path | None,
) -> Any:
    from stormproof.load.options import shape_from_options

    built = shape_from_options(
        shape,
        duration=duration,
        rate=rate,
        peak=peak,
        burst=burst,
        idle=idle,
        lead_in=lead_in,
        tail=tail,
        replay=replay,
    )
    return built, built.plan(duration, seed)


@contextmanager
def _live_view(enabled: bool, duration: float) -> Iterator[Callable[[dict[str, int], float], None]]:
    """A rich live table updated from the runner's ticks (no refresh thread: we refresh)."""
    if not enabled:
        yield lambda counts, elapsed: None
        return
    from rich.live import Live

    def render(counts: dict[str, int], elapsed: float) -> Table:
        table = Table(title=f"load: {elapsed:5.1f} / {duration:g} s")
        for name in ("started", "done", "in_flight", "ok", "shed", "errors"):
            table.add_column(name, justify="right")
        table.add_row(
            *(
                str(counts[name])
                for name in ("started", "done", "in_flight", "ok", "shed", "errors")
            )
        )
        return table

    with Live(
        render(dict.fromkeys(("started", "done", "in_flight", "ok", "shed", "errors"), 0), 0.0),
        auto_refresh=False,
        transient=False,
    ) as live:

        def tick(counts: dict[str, int], elapsed: float) -> None:
            live.update(render(counts, elapsed), refresh=True)

        yield tick


@load_app.command("run")
def load_run(
    target: Annotated[str, typer.Option(help="URL to send every request to.")],
    shape: ShapeOpt = "bursts",
    seed: SeedOpt = 0,
    duration: DurationOpt = 60.0,
    rate: RateOpt = 5.0,
    peak: PeakOpt = "50",
    burst: BurstOpt = "2..5",
    idle: IdleOpt = "exp:8:3..20",
    lead_in: LeadInOpt = None,
    tail: TailOpt = 0.0,
    replay: ReplayOpt = None,
    max_requests: Annotated[
        int | None, typer.Option(min=1, help="Send at most this many requests.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.001, help="Per-request timeout (s).")] = 10.0,
    method: Annotated[str, typer.Option(help="HTTP method.")] = "POST",
    duplicates: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of resends of an earlier key.")
    ] = 0.0,
    invalid: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of schema-breaking events.")
    ] = 0.0,
    key_prefix: Annotated[
        str | None, typer.Option(help="Idempotency key prefix (default: random per run).")
    ] = None,
    window: Annotated[
        float,
        typer.Option(min=0.001, help="Recovery window (s); aim for >= 10 idle requests in one."),
    ] = 2.0,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the run as JSON to this file.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report to this file.")] = None,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="Live view (default: on a terminal).")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            help="Exit 1 unless every burst recovered and every shed answer had Retry-After."
        ),
    ] = False,
) -> None:
    """Drive TARGET with a seeded shape and report per-burst recovery."""
    import asyncio

    from stormproof.load.metrics import RecoveryCriteria
    from stormproof.load.report import write_json, write_report
    from stormproof.load.runner import RunConfig
    from stormproof.load.session import load_test
    from stormproof.load.traffic import Traffic

    try:
        built, _ = _plan(shape, seed, duration, rate, peak, burst, idle, lead_in, tail, replay)
        config = RunConfig(target, duration, max_requests=max_requests, timeout=timeout)
        traffic = Traffic(
            method=method,
            duplicate_fraction=duplicates,
            invalid_fraction=invalid,
            key_prefix=key_prefix if key_prefix is not None else uuid.uuid4().hex[:8],
            body=None if method.upper() in ("GET", "HEAD", "DELETE") else Traffic().body,
        )
        criteria = RecoveryCriteria(window=window)
    except ConfigError as error:
        raise _fail(error) from None
    show = sys.stdout.isatty() if live is None else live
    with _live_view(show, duration) as tick:
        run = asyncio.run(
            load_test(
                built,
                config,
                seed=seed,
                traffic=traffic,
                criteria=criteria,
                on_tick=tick if show else None,
            )
        )
    _print_summary(run)
    if json_file is not None:
        write_json(run, json_file)
        typer.echo(f"JSON written to {json_file}")
    if report is not None:
        write_report(run, report)
        typer.echo(f"report written to {report}")
    if check and (not run.analysis.all_recovered() or run.analysis.shed_without_retry_after):
        raise typer.Exit(1)


def _print_summary(run: Any) -> None:
    analysis = run.analysis
    totals = analysis.totals
    console = Console()

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:.1f} ms"

    console.print(
        f"{totals['requests']} requests: {totals['ok']} ok, {totals['shed']} shed, "
        f"{totals['errors']} errors; p50 {ms(analysis.p50)}, p99 {ms(analysis.p99)}; "
        f"shed without Retry-After: {analysis.shed_without_retry_after}"
    )
    base = analysis.baseline
    console.print(
        f"baseline {base.start:.2f}-{base.end:.2f} s: {base.ok} ok of {base.requests}, "
        f"p50 {ms(base.p50)}" + (f" ({escape(base.note)})" if base.note else "")
    )
    table = Table(title="per burst")
    for column in ("#", "window (s)", "requests", "success", "shed", "p50", "p99", "recovered in"):
        table.add_column(column, justify="right")
    for b in analysis.bursts:
        table.add_row(
            str(b.index),
            f"{b.start:.2f}-{b.end:.2f}",
            str(b.requests),
            "n/a" if b.success_rate is None else f"{b.success_rate:.1%}",
            str(b.shed),
            ms(b.p50),
            ms(b.p99),
            "never" if b.time_to_recover is None else f"<= {b.time_to_recover:g} s",
        )
    console.print(table)


@load_app.command("export")
def load_export(
    format_: Annotated[str, typer.Option("--format", help="locust or k6.")],
    shape: ShapeOpt = "bursts",
    seed: SeedOpt = 0,
    duration: DurationOpt = 60.0,
    rate: RateOpt = 5.0,
    peak: PeakOpt = "50",
    burst: BurstOpt = "2..5",
    idle: IdleOpt = "exp:8:3..20",
    lead_in: LeadInOpt = None,
    tail: TailOpt = 0.0,
    replay: ReplayOpt = None,
    requests_per_user: Annotated[
        float, typer.Option(min=0.001, help="Locust: requests/s per user (constant_throughput).")
    ] = 1.0,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the shape as a Locust LoadTestShape module or k6 scenarios JSON."""
    from stormproof.load.export import k6_options, locust_module

    try:
        built, plan = _plan(shape, seed, duration, rate, peak, burst, idle, lead_in, tail, replay)
        if format_ == "locust":
            text = locust_module(
                plan,
                requests_per_user=requests_per_user,
                description=built.describe(),
                seed=seed,
            )
        elif format_ == "k6":
            text = k6_options(plan) + "\n"
        else:
            raise ConfigError("format", "must be locust or k6", format_)
    except ConfigError as error:
        raise _fail(error) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"{format_} export written to {out}")


@load_app.command("plan")
def load_plan(
    shape: ShapeOpt = "bursts",
    seed: SeedOpt = 0,
    duration: DurationOpt = 60.0,
    rate: RateOpt = 5.0,
    peak: PeakOpt = "50",
    burst: BurstOpt = "2..5",
    idle: IdleOpt = "exp:8:3..20",
    lead_in: LeadInOpt = None,
    tail: TailOpt = 0.0,
    replay: ReplayOpt = None,
) -> None:
    """Print the rate plan (steps and bursts) and the expected request count, as JSON."""
    try:
        built, plan = _plan(shape, seed, duration, rate, peak, burst, idle, lead_in, tail, replay)
    except ConfigError as error:
        raise _fail(error) from None
    data = {"shape": built.describe(), "seed": seed, "expected_requests": plan.expected()}
    data.update(plan.to_json())
    typer.echo(json.dumps(data, indent=1))
