"""``stormproof model check|lint|run``: a user's own service graph from a topology file.

Problems in the file are printed one per line as ``FILE:LINE: field: rule`` (TOML files have no
line numbers: ``FILE: field: rule``), never as a stack trace. Exit codes: 0 fine; 1 the file has
problems, or ``lint`` found errors; 2 bad command-line options (unknown policy or trigger);
3 a simulation ran past its event limit.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stormproof.cli._app import app
from stormproof.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from stormproof.model.lint import Finding
    from stormproof.model.load import Loaded
    from stormproof.model.spec import Topology

model_app = typer.Typer(
    help="Model your own system: check, lint and simulate a topology file.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")

_FILE_HELP = "Topology file (.yaml, .yml or .toml)."
_SET_HELP = "A policy-set file (.yaml, .yml or .toml) to compare as well (repeatable)."


def _read(path: str) -> Loaded:
    from stormproof.model.load import TopologyError, read_file

    try:
        return read_file(path)
    except TopologyError as error:
        _problems(error.problems, path)


def _problems(problems: list[Any], where: str) -> NoReturn:
    """Print ``problems`` one per line, then exit with status 1."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(escape(str(problem)))
    err.print(f"{len(problems)} problem(s) in {escape(where)}")
    raise typer.Exit(1) from None


def _with_sets(topology: Topology, paths: list[str]) -> tuple[Topology, dict[str, str]]:
    """``topology`` with the sets of ``paths`` added (checked), and set name -> file."""
    from stormproof.model.load import TopologyError
    from stormproof.model.policy_file import apply_policy_sets, read_policy_set_file

    loaded = []
    problems = []
    for path in paths:
        try:
            loaded.append(read_policy_set_file(path))
        except TopologyError as error:
            problems += error.problems
    try:
        if not problems:
            sources = {item.policy_set.name: item.filename for item in loaded}
            return apply_policy_sets(topology, loaded), sources
    except TopologyError as error:
        problems += error.problems
    _problems(problems, ", ".join(paths))


@model_app.command("check")
def check(
    path: Annotated[str, typer.Argument(metavar="FILE", help=_FILE_HELP)],
    policy_set: Annotated[
        list[str] | None, typer.Option("--policy-set", metavar="FILE", help=_SET_HELP)
    ] = None,
) -> None:
    """Validate a topology file (and policy-set files) against the schemas and graph rules."""
    loaded = _read(path)
    topology, _ = _with_sets(loaded.topology, policy_set or [])
    typer.echo(
        f"{path}: ok ({len(topology.services)} services, {len(topology.edges)} edges, "
        f"{len(topology.entries)} entries, {len(topology.fleets)} fleets, "
        f"{len(topology.triggers)} triggers, {len(topology.policy_sets)} policy sets)"
    )


@model_app.command("lint")
def lint(
    path: Annotated[str, typer.Argument(metavar="FILE", help=_FILE_HELP)],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="Lint the topology as this policy set has it (repeatable): as_written, a "
            "policy set of the file or of --policy-set, or all; default: as_written."
        ),
    ] = None,
    policy_set: Annotated[
        list[str] | None, typer.Option("--policy-set", metavar="FILE", help=_SET_HELP)
    ] = None,
) -> None:
    """Static findings: retry amplification, timeouts, jitter, budgets, queues, zones, fleets."""
    from stormproof.model.lint import lint as run_lint
    from stormproof.model.simulate import AS_WRITTEN, with_policy_set

    loaded = _read(path)
    topology, _ = _with_sets(loaded.topology, policy_set or [])
    names = list(dict.fromkeys(policy or [AS_WRITTEN]))
    if "all" in names:
        names = [AS_WRITTEN, *(p.name for p in topology.policy_sets)]
    linted: list[tuple[str, Topology, list[Finding]]] = []
    for name in names:
        try:
            variant = with_policy_set(topology, name)
        except ConfigError as error:
            Console(stderr=True, soft_wrap=True).print(
                "[red]error:[/red]", escape(f"{error} (or all)")
            )
            raise typer.Exit(2) from None
        linted.append((name, variant, run_lint(variant)))

    def line_of(name: str, finding: Finding) -> int | None:
        # A policy set's clients are not at the topology file's lines: no line for them.
        return loaded.line(finding.path) if name == AS_WRITTEN else None

    if json_output:
        sections = {
            name: _lint_json(findings, variant, partial(line_of, name))
            for name, variant, findings in linted
        }
        first = sections[linted[0][0]]
        document: dict[str, Any] = {"file": path, "topology": loaded.topology.name, **first}
        document["policies"] = sections
        typer.echo(json.dumps(document))
    else:
        out = Console(highlight=False, soft_wrap=True)
        for name, _variant, findings in linted:
            if len(linted) > 1 or name != AS_WRITTEN:
                out.print(escape(f"== {name} =="))
            for finding in findings:
                line = line_of(name, finding)
                where = path if line is None else f"{path}:{line}"
                if name != AS_WRITTEN:
                    where = f"{where} [{name}] {finding.field}"
                out.print(
                    escape(
                        f"{where}: {finding.severity}: {finding.rule}: {finding.subject}: "
                        f"{finding.message}"
                    )
                )
                out.print(escape(f"    see {finding.doc}; fix: {', '.join(finding.fix)}"))
            errors = sum(1 for f in findings if f.severity == "error")
            out.print(f"{errors} error(s), {len(findings) - errors} warning(s)")
    if any(f.severity == "error" for _name, _variant, findings in linted for f in findings):
        raise typer.Exit(1)


def _lint_json(
    findings: list[Finding], topology: Topology, line: Callable[[Finding], int | None]
) -> dict[str, Any]:
    """The counts, findings and amplification table of one linted policy."""
    from stormproof.model.lint import amplification

    errors = sum(1 for f in findings if f.severity == "error")
    amp = amplification(topology)
    return {
        "counts": {"error": errors, "warning": len(findings) - errors},
        "findings": [f.to_json(line(f)) for f in findings],
        "amplification": None
        if amp is None
        else [
            {
                "source": a.source,
                "service": a.service,
                "worst_case": a.worst_case,
                "with_budgets": a.with_budgets,
            }
            for a in amp
        ],
    }


@model_app.command("run")
def run(
    path: Annotated[str, typer.Argument(metavar="FILE", help=_FILE_HELP)],
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds per policy.")] = 20,
    seed: Annotated[int, typer.Option(help="First seed; runs use seed .. seed+seeds-1.")] = 0,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="Policy to run (repeatable): as_written or a policy set; default: all."),
    ] = None,
    trigger: Annotated[
        list[str] | None,
        typer.Option(help="Trigger to apply (repeatable); default: all of the file's."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: CPU count).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    policy_set: Annotated[
        list[str] | None, typer.Option("--policy-set", metavar="FILE", help=_SET_HELP)
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(metavar="FILE.html", help="Write a self-contained HTML report to this file."),
    ] = None,
) -> None:
    """Simulate the topology over seeds for each policy set, on common random numbers.

    The policies are as_written, the file's own policy sets and those of --policy-set files,
    all on the same seeds; --policy picks some of them.
    """
    from stormproof.model.simulate import TopologyScenario
    from stormproof.sim import SimulationLimitExceeded
    from stormproof.sim.experiment import run_experiment

    loaded = _read(path)
    topology, sources = _with_sets(loaded.topology, policy_set or [])
    err = Console(stderr=True)
    try:
        scenario = TopologyScenario(topology, trigger)
        chosen = list(policy) if policy else list(scenario.policy_names)
        for name in chosen:
            scenario.check_policy(name)
        seed_list = list(range(seed, seed + seeds))
        result = run_experiment(
            scenario, {}, chosen, seed_list, workers=workers, series=report is not None
        )
    except ConfigError as error:
        err.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None
    except SimulationLimitExceeded as error:
        err.print("[red]error:[/red]", escape(f"{error}; try a shorter horizon or less load"))
        raise typer.Exit(3) from None
    if report is not None:
        from stormproof.model.report import topology_report

        report.write_text(topology_report(scenario, result, sources), encoding="utf-8")
    document = result.to_json()
    document["scenario"] = loaded.topology.name
    document["triggers"] = [t.name for t in scenario.topology.triggers]
    if json_output:
        typer.echo(json.dumps(document))
        return
    table = Table(
        title=f"{loaded.topology.name}: {seeds} seed(s) per policy, same seeds; triggers: "
        + (", ".join(document["triggers"]) or "none")
    )
    table.add_column("", no_wrap=True)
    summaries = list(result.policies.values())
    for name in result.policies:
        table.add_column(name, justify="right")
    table.add_row("stuck runs", *(f"{s.stuck_runs}/{s.runs}" for s in summaries))
    table.add_row(
        "P(stuck) [95% CI]",
        *(f"{s.stuck_probability:.0%} [{s.ci95[0]:.0%}, {s.ci95[1]:.0%}]" for s in summaries),
    )
    names = list(summaries[0].metrics)
    for metric in names:
        table.add_row(metric, *(_cell(s.metrics.get(metric)) for s in summaries))
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)
    if report is not None:
        console.print(f"report written to {escape(str(report))}")


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
