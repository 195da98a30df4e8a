"""Load topology files (YAML or TOML) into a :class:`~stormproof.model.spec.Topology`.

Three passes, each reporting every problem it finds, with the file, the line and the field:

1. parse -- YAML through PyYAML's composer, which keeps the line of every key and item, so a
   problem anywhere in the tree can be given its line; TOML through :mod:`tomllib`, which
   keeps no positions, so TOML problems carry the field path only (``services.db.workers``);
2. the JSON Schema (:mod:`stormproof.model.schema`) -- types, ranges, unknown or missing keys;
3. building the typed objects (each validates its own fields), then the whole-graph checks of
   :func:`stormproof.model.graph.check` (unknown services, cycles, trigger windows).

Problems are raised together as one :class:`TopologyError`, never as a stack trace of the
first one.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path as FilePath
from typing import Any

from stormproof.errors import ConfigError, StormproofError
from stormproof.model import graph
from stormproof.model.graph import Problem, format_path
from stormproof.model.schema import SCHEMA
from stormproof.model.spec import (
    AutomationSpec,
    AwsQuotaSpec,
    BudgetSpec,
    BulkheadSpec,
    BurstLoad,
    CapacityLoss,
    ClientSpec,
    ConstantLoad,
    EdgeSpec,
    EntrySpec,
    FleetSpec,
    GrpcThrottleSpec,
    LatencyInjection,
    LatencySpec,
    LeaseSpec,
    LoadShape,
    LoadSpike,
    Outage,
    Partition,
    PolicySet,
    QueueRateSpec,
    RatioBudgetSpec,
    ServicePatch,
    ServiceSpec,
    ServiceTime,
    SpikeLoad,
    StuckRule,
    TokenBucketSpec,
    Topology,
    Trigger,
    VelocitySpec,
)
from stormproof.policies.admission import QueueLimit
from stormproof.policies.backoff import (
    Backoff,
    Constant,
    Decorrelated,
    Exponential,
    Jitter,
    NoBackoff,
)
from stormproof.policies.breaker import BreakerConfig
from stormproof.policies.pipeline import Hedge

__all__ = ["Loaded", "Located", "TopologyError", "load_file", "load_text", "read_file", "read_text"]

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Located:
    """A problem in a file: ``FILE:LINE: field: rule`` (``FILE: field: rule`` without a line)."""

    file: str
    line: int | None
    field: str
    rule: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.rule}"


class TopologyError(StormproofError):
    """A topology file has problems; ``problems`` lists every one found, in file order."""

    def __init__(self, problems: list[Located]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


# -- parsing --------------------------------------------------------------------------------------


#: A parse problem: line (if known), field and rule.
_Parsed = tuple[int | None, str, str]


def _parse_yaml(text: str, lines: dict[Path, int]) -> tuple[Any, list[_Parsed]]:
    """Parse YAML, filling ``lines`` with the line of every key and item."""
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading YAML topology files needs PyYAML: pip install 'stormproof[model]'"
        ) from None

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        duplicates: list[_Parsed] = []
        _index_lines(node, (), lines, duplicates)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        return None, [(line, "(file)", f"not valid YAML: {error.problem or error.context}")]
    except yaml.YAMLError as error:
        return None, [(None, "(file)", f"not valid YAML: {error}")]
    finally:
        loader.dispose()
    return data, duplicates


def _index_lines(node: Any, path: Path, lines: dict[Path, int], duplicates: list[_Parsed]) -> None:
    import yaml  # type: ignore[import-untyped,unused-ignore]

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append((line, format_path((*path, key)), "duplicate key"))
            seen.add(key)
            lines[(*path, key)] = line
            _index_lines(value_node, (*path, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(item, (*path, index), lines, duplicates)


_TOML_LINE = re.compile(r"\(at line (\d+)")


def _parse_toml(text: str) -> tuple[Any, list[_Parsed]]:
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as error:
        match = _TOML_LINE.search(str(error))
        line = int(match.group(1)) if match else None
        return None, [(line, "(file)", f"not valid TOML: {error}")]


# -- schema ---------------------------------------------------------------------------------------


def _schema_problems(data: Any, schema: Mapping[str, Any] = SCHEMA) -> list[Problem]:
    try:
        from jsonschema import (  # type: ignore[import-untyped,unused-ignore]
            Draft202012Validator,
        )
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "validating topology files needs jsonschema: pip install 'stormproof[model]'"
        ) from None

    validator = Draft202012Validator(schema)
    problems: list[Problem] = []
    for error in validator.iter_errors(data):
        path: Path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            allowed = error.schema.get("properties", {})
            for key in error.instance:
                if key not in allowed:
                    valid = ", ".join(sorted(allowed))
                    problems.append(Problem((*path, key), f"unknown field; valid: {valid}"))
            continue
        if error.validator in ("if", "allOf"):
            continue  # reported through the 'then' branch's own errors
        problems.append(Problem(path, _schema_rule(error)))
    # if/then branches can report the same error more than once.
    return list(dict.fromkeys(problems))


def _schema_rule(error: Any) -> str:
    kind = error.validator
    value = error.validator_value
    if kind == "required":
        missing = [name for name in value if name not in error.instance]
        return f"missing required field(s): {', '.join(missing)}"
    if kind == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        return f"must be of type {expected} (got {error.instance!r})"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        symbol = {
            "minimum": ">=",
            "exclusiveMinimum": ">",
            "maximum": "<=",
            "exclusiveMaximum": "<",
        }
        return f"must be {symbol[kind]} {value} (got {error.instance!r})"
    if kind == "enum":
        return f"must be one of {', '.join(map(str, value))} (got {error.instance!r})"
    if kind == "const":
        return f"must be {value!r} (got {error.instance!r})"
    if kind == "pattern":
        return f"must be a name of letters, digits and _ . : - (got {error.instance!r})"
    return str(error.message)


# -- building -------------------------------------------------------------------------------------


class _Builder:
    """Builds the typed objects, collecting every ConfigError with its path."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def make(self, path: Path, factory: Callable[[], Any]) -> Any:
        try:
            return factory()
        except ConfigError as error:
            rule = error.rule
            if error.value is not None:
                rule += f" (got {error.value!r})"
            self.problems.append(Problem((*path, error.field), rule))
            return None


def _backoff(data: Mapping[str, Any]) -> Backoff:
    kind = data.get("kind", "none")
    options = {k: v for k, v in data.items() if k != "kind"}
    if "jitter" in options:
        options["jitter"] = Jitter(options["jitter"])
    if kind == "constant":
        return Constant(**options)
    if kind == "exponential":
        return Exponential(**options)
    if kind == "decorrelated":
        return Decorrelated(**options)
    return NoBackoff()


_BUDGETS: dict[str, Callable[..., BudgetSpec]] = {
    "ratio": RatioBudgetSpec,
    "aws_quota": AwsQuotaSpec,
    "grpc": GrpcThrottleSpec,
    "token_bucket": TokenBucketSpec,
}


def _client(b: _Builder, path: Path, data: Mapping[str, Any] | None) -> ClientSpec:
    data = data or {}
    options: dict[str, Any] = {
        k: data[k] for k in ("timeout", "max_attempts", "total_timeout") if k in data
    }
    if "backoff" in data:
        options["backoff"] = b.make((*path, "backoff"), lambda: _backoff(data["backoff"]))
    if "budget" in data:
        budget = dict(data["budget"])
        make = _BUDGETS[budget.pop("kind")]
        options["budget"] = b.make((*path, "budget"), lambda: make(**budget))
    if "breaker" in data:
        options["breaker"] = b.make((*path, "breaker"), lambda: BreakerConfig(**data["breaker"]))
    if "hedge" in data:
        options["hedge"] = b.make((*path, "hedge"), lambda: Hedge(**data["hedge"]))
    if any(value is None for value in options.values()):
        return ClientSpec()  # a part failed and was reported; keep building the rest
    built = b.make(path, lambda: ClientSpec(**options))
    return built if built is not None else ClientSpec()


def _latency(b: _Builder, path: Path, data: Mapping[str, Any] | None) -> LatencySpec:
    built = b.make(path, lambda: LatencySpec(**(data or {})))
    return built if built is not None else LatencySpec()


def _protections(b: _Builder, path: Path, data: Mapping[str, Any], options: dict[str, Any]) -> None:
    """Admission and bulkhead settings of a service (or of a policy set's patch)."""
    admission = data.get("admission")
    if admission is not None:
        settings = {k: v for k, v in admission.items() if k != "kind"}
        if admission["kind"] == "queue_limit":
            options["admission"] = b.make(
                (*path, "admission"), lambda: QueueLimit(settings["max_queue"])
            )
        else:
            options["admission"] = b.make((*path, "admission"), lambda: QueueRateSpec(**settings))
    if "bulkhead" in data:
        options["bulkhead"] = b.make((*path, "bulkhead"), lambda: BulkheadSpec(**data["bulkhead"]))


def _policy_set(
    b: _Builder, path: Path, name: str, changes: Mapping[str, Any], description: str = ""
) -> PolicySet:
    """Build one schema-valid policy set (inline in a topology or a file of its own)."""

    def clients(group: str) -> tuple[tuple[str, ClientSpec], ...]:
        return tuple(
            (key, _client(b, (*path, group, key), client))
            for key, client in changes.get(group, {}).items()
        )

    patches = []
    for key, patch in changes.get("services", {}).items():
        fields: dict[str, Any] = {"queue_limit": patch.get("queue_limit")}
        remove = list(patch.get("remove", ()))
        # An explicit null reads as in a service: no queue limit, so it removes the limit.
        if "queue_limit" in patch and patch["queue_limit"] is None and "queue_limit" not in remove:
            remove.append("queue_limit")
        _protections(b, (*path, "services", key), patch, fields)
        built = b.make(
            (*path, "services", key), partial(ServicePatch, remove=tuple(remove), **fields)
        )
        patches.append((key, built if built is not None else ServicePatch()))
    return PolicySet(
        name,
        edges=clients("edges"),
        entries=clients("entries"),
        services=tuple(patches),
        fleets=clients("fleets"),
        description=description,
    )


def _service(b: _Builder, name: str, data: Mapping[str, Any]) -> ServiceSpec | None:
    path: Path = ("services", name)
    time = b.make((*path, "service_time"), lambda: ServiceTime(**data["service_time"]))
    options: dict[str, Any] = {
        "workers": data.get("workers"),
        "queue_limit": data.get("queue_limit"),
        "zones": tuple(data.get("zones", ())),
        "calls": data.get("calls", "sequential"),
    }
    _protections(b, path, data, options)
    if "automation" in data:
        auto = dict(data["automation"])
        velocity = None
        if "velocity" in auto:
            velocity = b.make(
                (*path, "automation", "velocity"), lambda: VelocitySpec(**auto["velocity"])
            )
        options["automation"] = AutomationSpec(auto.get("removes_capacity", True), velocity)
    if time is None:
        return None
    return b.make(path, lambda: ServiceSpec(name=name, service_time=time, **options))  # type: ignore[no-any-return]


def _load(b: _Builder, path: Path, data: Mapping[str, Any]) -> LoadShape | None:
    settings = {k: v for k, v in data.items() if k != "shape"}
    shapes: dict[str, Callable[..., LoadShape]] = {
        "constant": ConstantLoad,
        "spike": SpikeLoad,
        "bursts": BurstLoad,
    }
    make = shapes[data["shape"]]
    return b.make(path, lambda: make(**settings))  # type: ignore[no-any-return]


_TRIGGERS: dict[str, Callable[..., Trigger]] = {
    "outage": Outage,
    "latency": LatencyInjection,
    "capacity_loss": CapacityLoss,
    "partition": Partition,
    "load_spike": LoadSpike,
}


def build(data: Mapping[str, Any]) -> tuple[Topology | None, list[Problem]]:
    """Build a topology from schema-valid ``data``; returns it (or ``None``) and the problems."""
    b = _Builder()
    services = [_service(b, name, spec) for name, spec in data["services"].items()]
    edges = []
    for index, edge in enumerate(data.get("edges", ())):
        path: Path = ("edges", index)
        client = _client(b, (*path, "client"), edge.get("client"))
        latency = _latency(b, (*path, "latency"), edge.get("latency"))
        edges.append(
            b.make(
                path,
                partial(EdgeSpec, edge["from"], edge["to"], client, latency, edge.get("for_zone")),
            )
        )
    entries = []
    for name, entry in data.get("entries", {}).items():
        path = ("entries", name)
        load = _load(b, (*path, "load"), entry["load"])
        client = _client(b, (*path, "client"), entry.get("client"))
        latency = _latency(b, (*path, "latency"), entry.get("latency"))
        if load is not None:
            entries.append(
                b.make(
                    path,
                    partial(
                        EntrySpec, name, entry["target"], load, client, latency, entry.get("zone")
                    ),
                )
            )
    fleets = []
    for name, fleet in data.get("fleets", {}).items():
        path = ("fleets", name)
        client = _client(b, (*path, "client"), fleet.get("client"))
        latency = _latency(b, (*path, "latency"), fleet.get("latency"))
        lease = None
        if "lease" in fleet:
            lease = b.make((*path, "lease"), partial(LeaseSpec, **fleet["lease"]))
        fleets.append(
            b.make(
                path,
                partial(
                    FleetSpec,
                    name,
                    fleet["target"],
                    fleet["size"],
                    fleet["period"],
                    client,
                    latency,
                    fleet.get("zone"),
                    lease,
                ),
            )
        )
    triggers = []
    for name, trigger in data.get("triggers", {}).items():
        window = {k: v for k, v in trigger.items() if k != "kind"}
        triggers.append(
            b.make(("triggers", name), partial(_TRIGGERS[trigger["kind"]], name, **window))
        )
    policy_sets = [
        _policy_set(b, ("policy_sets", name), name, changes)
        for name, changes in data.get("policy_sets", {}).items()
    ]
    stuck = None
    if "stuck" in data:
        stuck = b.make(("stuck",), lambda: StuckRule(**data["stuck"]))
    parts: list[Any] = [*services, *edges, *entries, *fleets, *triggers]
    if b.problems or any(part is None for part in parts):
        return None, b.problems
    topology = b.make(
        (),
        lambda: Topology(
            name=data["name"],
            description=data.get("description", ""),
            services=tuple(s for s in services if s is not None),
            entries=tuple(entries),
            edges=tuple(edges),
            fleets=tuple(fleets),
            triggers=tuple(triggers),
            zones=tuple(data.get("zones", ())),
            horizon=data.get("horizon", 60.0),
            stuck=stuck,
            policy_sets=tuple(policy_sets),
            allow_cycles=data.get("allow_cycles", False),
        ),
    )
    if topology is None:
        return None, b.problems
    return topology, graph.check(topology)


# -- entry points ---------------------------------------------------------------------------------


def _line(lines: Mapping[Path, int], path: Path) -> int | None:
    """The line of ``path``, or of its nearest ancestor the file mentions."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]


@dataclass(frozen=True, slots=True)
class Loaded:
    """A loaded topology with its file name and the line of every field (YAML only)."""

    topology: Topology
    filename: str
    lines: Mapping[Path, int]

    def line(self, path: Path) -> int | None:
        """The line of ``path`` or of its nearest ancestor; ``None`` for TOML."""
        return _line(self.lines, path) if self.lines else None


def load_text(text: str, *, filename: str = "<text>", format: str = "yaml") -> Topology:
    """Load a topology from ``text`` in ``format`` (``yaml`` or ``toml``).

    Raises :class:`TopologyError` listing every problem with its line (YAML) and field path.
    """
    return read_text(text, filename=filename, format=format).topology


def read_text(text: str, *, filename: str = "<text>", format: str = "yaml") -> Loaded:
    """Like :func:`load_text`, keeping the file name and line numbers for later messages."""
    data, lines = _parse(text, filename, format)
    problems = _schema_problems(data)
    topology = None
    if not problems:
        topology, problems = build(data)
    _raise_located(problems, filename, lines)
    assert topology is not None
    return Loaded(topology, filename, lines)


def _parse(text: str, filename: str, format: str) -> tuple[Any, dict[Path, int]]:
    """Parse ``text``; raise TopologyError for a file that is not YAML/TOML or is empty."""
    if format not in ("yaml", "toml"):
        raise ConfigError("format", 'must be "yaml" or "toml"', format)
    lines: dict[Path, int] = {}
    if format == "yaml":
        data, parse_problems = _parse_yaml(text, lines)
    else:
        data, parse_problems = _parse_toml(text)
    located = [Located(filename, line, field, rule) for line, field, rule in parse_problems]
    if data is None and not located:
        located.append(Located(filename, 1, "(file)", "is empty"))
    if located:
        raise TopologyError(located)
    return data, lines


def _raise_located(problems: list[Problem], filename: str, lines: Mapping[Path, int]) -> None:
    """Raise TopologyError with ``problems`` in line order, if there are any."""
    if problems:
        ordered = sorted(problems, key=lambda p: (_line(lines, p.path) or 0, p.field))
        raise TopologyError(
            [Located(filename, _line(lines, p.path), p.field, p.rule) for p in ordered]
        )


def load_file(path: str | FilePath) -> Topology:
    """Load a ``.yaml``/``.yml`` or ``.toml`` topology file (see :func:`load_text`)."""
    return read_file(path).topology


def read_file(path: str | FilePath) -> Loaded:
    """Like :func:`load_file`, keeping the file name and line numbers for later messages."""
    text, filename, format = _source(path)
    return read_text(text, filename=filename, format=format)


def _source(path: str | FilePath) -> tuple[str, str, str]:
    """The text, file name and format of the file at ``path``, or TopologyError."""
    file = FilePath(path)
    suffix = file.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise TopologyError(
            [Located(str(file), None, "(file)", "must end in .yaml, .yml or .toml")]
        )
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise TopologyError(
            [Located(str(file), None, "(file)", f"cannot be read: {error.strerror}")]
        ) from None
    return text, str(file), "toml" if suffix == ".toml" else "yaml"
