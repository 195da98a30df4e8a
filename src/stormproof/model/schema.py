"""The JSON Schema of topology files (draft 2020-12), published as docs/model/topology.schema.json.

The schema checks shapes, types and ranges, so that most mistakes in a file are reported with a
line number before anything is built. Variants (backoff kinds, budgets, load shapes, triggers)
are tagged by one field (``kind`` or ``shape``) and checked with ``if``/``then`` on the tag,
which gives errors about the variant the user meant instead of a list of every alternative.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "EDGE_PATTERN",
    "NAME_PATTERN",
    "POLICY_SET_SCHEMA",
    "SCHEMA",
    "policy_set_schema_text",
    "schema_text",
    "write_schema",
]

Json = dict[str, Any]

_NUMBER: Json = {"type": "number"}
_NON_NEGATIVE: Json = {"type": "number", "minimum": 0}
_POSITIVE: Json = {"type": "number", "exclusiveMinimum": 0}
_FRACTION: Json = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
_COUNT: Json = {"type": "integer", "minimum": 1}
#: Names of services, zones, entries, triggers: letters, digits and ``_ . : -`` (so that
#: ``a->b`` is always an edge, never a name).
NAME_PATTERN = "^[A-Za-z0-9_.:-]+$"
EDGE_PATTERN = "^[A-Za-z0-9_.:-]+->[A-Za-z0-9_.:-]+$"
_NAME: Json = {"type": "string", "pattern": NAME_PATTERN}
_EDGE: Json = {"type": "string", "pattern": EDGE_PATTERN}
_NAME_OR_EDGE: Json = {"type": "string", "pattern": f"{NAME_PATTERN}|{EDGE_PATTERN}"}


def _object(properties: Json, required: tuple[str, ...] = (), description: str = "") -> Json:
    schema: Json = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def _named(schema: Json, names: Json = _NAME) -> Json:
    return {
        "type": "object",
        "propertyNames": names,
        "additionalProperties": schema,
    }


def _tagged(tag: str, variants: dict[str, tuple[Json, tuple[str, ...]]], description: str) -> Json:
    """An object whose ``tag`` field picks which properties it may and must have."""
    branches = []
    for value, (properties, required) in variants.items():
        branch = _object({tag: {"const": value}, **properties}, (tag, *required))
        branches.append({"if": {"properties": {tag: {"const": value}}}, "then": branch})
    return {
        "type": "object",
        "description": description,
        "required": [tag],
        "properties": {tag: {"enum": list(variants)}},
        "allOf": branches,
    }


_JITTER: Json = {"enum": ["none", "full", "equal"]}

BACKOFF = _tagged(
    "kind",
    {
        "none": ({}, ()),
        "constant": ({"seconds": _NON_NEGATIVE, "jitter": _JITTER}, ()),
        "exponential": (
            {
                "base": _NON_NEGATIVE,
                "factor": {"type": "number", "minimum": 1},
                "cap": _NON_NEGATIVE,
                "jitter": _JITTER,
            },
            (),
        ),
        "decorrelated": (
            {
                "base": _POSITIVE,
                "cap": _NON_NEGATIVE,
                "multiplier": {"type": "number", "minimum": 1},
            },
            (),
        ),
    },
    "Delay schedule between attempts (stormproof.policies.backoff).",
)

BUDGET = _tagged(
    "kind",
    {
        "ratio": (
            {"ratio": _NON_NEGATIVE, "min_retries_per_second": _NON_NEGATIVE, "ttl": _POSITIVE},
            (),
        ),
        "aws_quota": (
            {"capacity": _POSITIVE, "retry_cost": _NON_NEGATIVE, "timeout_cost": _NON_NEGATIVE},
            (),
        ),
        "grpc": ({"max_tokens": _POSITIVE, "token_ratio": _POSITIVE}, ()),
        "token_bucket": ({"capacity": {"type": "number", "minimum": 1}, "deposit": _POSITIVE}, ()),
    },
    "Retry budget shared by every call on the edge (stormproof.policies.budget).",
)

BREAKER = _object(
    {
        "window": {"enum": ["count", "time"]},
        "window_size": {"type": "number", "minimum": 1},
        "minimum_calls": _COUNT,
        "failure_rate_threshold": _FRACTION,
        "slow_call_rate_threshold": _FRACTION,
        "slow_call_duration": _POSITIVE,
        "open_duration": _POSITIVE,
        "half_open_probes": _COUNT,
    },
    description="Circuit breaker on the edge (stormproof.policies.breaker.BreakerConfig).",
)

CLIENT = _object(
    {
        "timeout": _POSITIVE,
        "max_attempts": _COUNT,
        "backoff": BACKOFF,
        "budget": BUDGET,
        "total_timeout": _POSITIVE,
        "breaker": BREAKER,
        "hedge": _object({"delay": _POSITIVE, "max_hedges": _COUNT}, ("delay",)),
    },
    description="How the caller calls: attempt timeout, retries, budget, breaker, hedging.",
)

LATENCY = _object(
    {"mean": _NON_NEGATIVE, "distribution": {"enum": ["constant", "exponential"]}},
    description="One-way network latency in seconds.",
)

SERVICE = _object(
    {
        "workers": {"type": ["integer", "null"], "minimum": 1},
        "queue_limit": {"type": ["integer", "null"], "minimum": 0},
        "service_time": _object(
            {
                "base": _NON_NEGATIVE,
                "per_request": _NON_NEGATIVE,
                "distribution": {"enum": ["constant", "exponential"]},
            },
            ("base",),
        ),
        "zones": {"type": "array", "items": _NAME},
        "calls": {
            "enum": ["sequential", "parallel"],
            "description": "Call the dependencies one after another, or all at once (fan-out).",
        },
        "admission": _tagged(
            "kind",
            {
                "queue_limit": ({"max_queue": _COUNT}, ("max_queue",)),
                "queue_rate": (
                    {
                        "max_queue": _COUNT,
                        "rate": _POSITIVE,
                        "soft_queue": {"type": "integer", "minimum": 0},
                    },
                    ("max_queue", "rate"),
                ),
            },
            "Load shedding before the queue (stormproof.policies.admission).",
        ),
        "bulkhead": _object(
            {
                "per": {"const": "zone"},
                "max_concurrent": _COUNT,
                "max_queue": {"type": "integer", "minimum": 0},
            },
            ("max_concurrent",),
            "Concurrent requests allowed per calling zone (KeyedBulkhead).",
        ),
        "automation": _object(
            {
                "removes_capacity": {"type": "boolean"},
                "velocity": _object(
                    {
                        "window": _POSITIVE,
                        "max_removed": {"type": "integer", "minimum": 0},
                        "max_fraction": _FRACTION,
                    },
                    ("window",),
                ),
            },
            description="Automation that removes capacity (health-check ejection, failover).",
        ),
    },
    ("service_time",),
)

LOAD = _tagged(
    "shape",
    {
        "constant": ({"rate": _NON_NEGATIVE}, ("rate",)),
        "spike": (
            {
                "rate": _NON_NEGATIVE,
                "spike_rate": _NON_NEGATIVE,
                "start": _NON_NEGATIVE,
                "duration": _POSITIVE,
            },
            ("rate", "spike_rate", "start", "duration"),
        ),
        "bursts": (
            {
                "rate": _NON_NEGATIVE,
                "burst": _POSITIVE,
                "idle": _POSITIVE,
                "idle_rate": _NON_NEGATIVE,
                "start": _NON_NEGATIVE,
            },
            ("rate", "burst", "idle"),
        ),
    },
    "Poisson arrivals whose rate follows this shape.",
)

_OUTSIDE = {"target": _NAME, "client": CLIENT, "latency": LATENCY, "zone": _NAME}

LEASE = _object(
    {"ttl": _POSITIVE, "retry_wait": _POSITIVE},
    ("ttl",),
    "Each member holds a lease that a successful call keeps valid for ttl seconds.",
)

_PROTECTION_NAMES = ["queue_limit", "admission", "bulkhead"]

_SERVICE_PATCH = _object(
    {
        **{key: SERVICE["properties"][key] for key in _PROTECTION_NAMES},
        "remove": {
            "type": "array",
            "items": {"enum": _PROTECTION_NAMES},
            "uniqueItems": True,
            "description": "Protections of the service this set takes away.",
        },
    },
    description="Set (replace) or remove a service's protections; queue_limit: null removes it.",
)

#: What a policy set may change; a client block replaces the caller's whole client.
_POLICY_SET_FIELDS: Json = {
    "edges": _named(CLIENT, _EDGE),
    "entries": _named(CLIENT),
    "fleets": _named(CLIENT),
    "services": _named(_SERVICE_PATCH),
}

_WINDOW = {"target": _NAME_OR_EDGE, "start": _NON_NEGATIVE, "duration": _POSITIVE}
_WINDOW_REQUIRED = ("target", "start", "duration")

TRIGGER = _tagged(
    "kind",
    {
        "outage": ({**_WINDOW, "mode": {"enum": ["hang", "error"]}}, _WINDOW_REQUIRED),
        "latency": ({**_WINDOW, "extra": _POSITIVE}, (*_WINDOW_REQUIRED, "extra")),
        "capacity_loss": ({**_WINDOW, "fraction": _FRACTION}, (*_WINDOW_REQUIRED, "fraction")),
        "partition": (_WINDOW, _WINDOW_REQUIRED),
        "load_spike": ({**_WINDOW, "rate": _NON_NEGATIVE}, (*_WINDOW_REQUIRED, "rate")),
    },
    "Something that happens to the system during a window.",
)


SCHEMA: Json = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://stormproof.dev/schemas/topology.schema.json",
    "title": "stormproof topology",
    "description": "A service graph for stormproof model check / lint / run.",
    **_object(
        {
            "name": _NAME,
            "description": {"type": "string"},
            "horizon": _POSITIVE,
            "zones": {"type": "array", "items": _NAME, "uniqueItems": True},
            "allow_cycles": {"type": "boolean"},
            "stuck": _object(
                {"late_start": _NON_NEGATIVE, "goodput_fraction": _FRACTION}, ("late_start",)
            ),
            "services": {**_named(SERVICE), "minProperties": 1},
            "edges": {
                "type": "array",
                "items": _object(
                    {
                        "from": _NAME,
                        "to": _NAME,
                        "client": CLIENT,
                        "latency": LATENCY,
                        "for_zone": _NAME,
                    },
                    ("from", "to"),
                ),
            },
            "entries": _named(_object({**_OUTSIDE, "load": LOAD}, ("target", "load"))),
            "fleets": _named(
                _object(
                    {**_OUTSIDE, "size": _COUNT, "period": _POSITIVE, "lease": LEASE},
                    ("target", "size", "period"),
                )
            ),
            "triggers": _named(TRIGGER),
            "policy_sets": _named(_object(_POLICY_SET_FIELDS)),
        },
        ("name", "services"),
    ),
}

#: A policy set in a file of its own (``stormproof model run --policy-set FILE``).
POLICY_SET_SCHEMA: Json = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://stormproof.dev/schemas/policy-set.schema.json",
    "title": "stormproof policy set",
    "description": "An alternative set of client policies and service protections for a topology.",
    **_object(
        {
            "name": _NAME,
            "description": {"type": "string"},
            "topology": {
                **_NAME,
                "description": "The topology this set is for; checked when given.",
            },
            **_POLICY_SET_FIELDS,
        },
        ("name",),
    ),
}


def schema_text() -> str:
    """The schema as the JSON text published in the docs."""
    return json.dumps(SCHEMA, indent=2) + "\n"


def policy_set_schema_text() -> str:
    """The policy-set file schema as the JSON text published in the docs."""
    return json.dumps(POLICY_SET_SCHEMA, indent=2) + "\n"


def write_schema(path: str | Path, policy_set_path: str | Path | None = None) -> None:
    """Write the schema to ``path`` and, if given, the policy-set schema to ``policy_set_path``.

    The docs copies are kept in sync by a test.
    """
    Path(path).write_text(schema_text(), encoding="utf-8")
    if policy_set_path is not None:
        Path(policy_set_path).write_text(policy_set_schema_text(), encoding="utf-8")
