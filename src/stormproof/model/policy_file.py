"""Policy sets in files of their own: ``stormproof model run FILE --policy-set SET.yaml``.

A policy-set file holds one :class:`~stormproof.model.spec.PolicySet`: the same ``edges``,
``entries``, ``fleets`` and ``services`` blocks as a topology's inline ``policy_sets``, plus its
``name``, an optional ``description`` and an optional ``topology`` (the name of the topology it
is written for, checked when given). Keeping the alternatives out of the topology lets a team
review "the system as it is" and "the change we propose" as separate files, and try one
proposal against several topologies.

It is checked like a topology file, in the same three passes (parse, JSON Schema -- published
as docs/model/policy-set.schema.json -- then building the typed objects), and then against the
topology it is applied to: every edge, entry, fleet and service it names must exist there, and
its name must not be taken. Problems are raised together as one
:class:`~stormproof.model.load.TopologyError`, each ``FILE:LINE: field: rule``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path as FilePath

from stormproof.model.graph import Problem, check_policy_set
from stormproof.model.load import (
    Located,
    Path,
    TopologyError,
    _Builder,
    _line,
    _parse,
    _policy_set,
    _raise_located,
    _schema_problems,
    _source,
)
from stormproof.model.schema import POLICY_SET_SCHEMA
from stormproof.model.spec import PolicySet, Topology

__all__ = [
    "LoadedPolicySet",
    "apply_policy_sets",
    "load_policy_set_file",
    "read_policy_set_file",
    "read_policy_set_text",
]


@dataclass(frozen=True, slots=True)
class LoadedPolicySet:
    """A policy set read from a file, with its file name and the line of every field.

    Lines are kept for YAML only; ``topology`` is the topology the file names, if any.
    """

    policy_set: PolicySet
    filename: str
    lines: Mapping[Path, int]
    topology: str | None = None

    def line(self, path: Path) -> int | None:
        """The line of ``path`` or of its nearest ancestor; ``None`` for TOML."""
        return _line(self.lines, path) if self.lines else None

    def check(self, topology: Topology) -> None:
        """Raise TopologyError if this set does not fit ``topology`` (unknown names, clashes)."""
        problems: list[Problem] = []
        name = self.policy_set.name
        if self.topology is not None and self.topology != topology.name:
            problems.append(
                Problem(
                    ("topology",),
                    f"this set is for topology {self.topology!r}, not {topology.name!r}",
                )
            )
        taken = ["as_written", *(p.name for p in topology.policy_sets)]
        if name in taken:
            problems.append(
                Problem(("name",), f"{name!r} is taken; names in use: {', '.join(taken)}")
            )
        problems += check_policy_set(topology, self.policy_set)
        _raise_located(problems, self.filename, self.lines)


def read_policy_set_text(
    text: str, *, filename: str = "<text>", format: str = "yaml"
) -> LoadedPolicySet:
    """Read a policy set from ``text`` in ``format`` (``yaml`` or ``toml``).

    Only the file itself is checked here; :meth:`LoadedPolicySet.check` checks it against a
    topology. Raises :class:`~stormproof.model.load.TopologyError` listing every problem.
    """
    data, lines = _parse(text, filename, format)
    problems = _schema_problems(data, POLICY_SET_SCHEMA)
    _raise_located(problems, filename, lines)
    builder = _Builder()
    built = _policy_set(builder, (), data["name"], data, data.get("description", ""))
    _raise_located(builder.problems, filename, lines)
    return LoadedPolicySet(built, filename, lines, data.get("topology"))


def read_policy_set_file(path: str | FilePath) -> LoadedPolicySet:
    """Read a ``.yaml``/``.yml`` or ``.toml`` policy-set file (see :func:`read_policy_set_text`)."""
    text, filename, format = _source(path)
    return read_policy_set_text(text, filename=filename, format=format)


def load_policy_set_file(path: str | FilePath, topology: Topology) -> PolicySet:
    """Read a policy-set file and check it against ``topology``; returns the set."""
    loaded = read_policy_set_file(path)
    loaded.check(topology)
    return loaded.policy_set


def apply_policy_sets(topology: Topology, loaded: Iterable[LoadedPolicySet]) -> Topology:
    """``topology`` with the file sets ``loaded`` added after its own, each checked against it.

    Two files with the same set name are a problem of the second one.
    """
    added: list[PolicySet] = []
    problems: list[Located] = []
    for item in loaded:
        current = replace(topology, policy_sets=(*topology.policy_sets, *added))
        try:
            item.check(current)
        except TopologyError as error:
            problems += error.problems
            continue
        added.append(item.policy_set)
    if problems:
        raise TopologyError(problems)
    return replace(topology, policy_sets=(*topology.policy_sets, *added))
