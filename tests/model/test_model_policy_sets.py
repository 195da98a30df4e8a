"""Policy sets in files of their own: validation with line numbers, and set/remove semantics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stormproof.errors import ConfigError
from stormproof.model.load import TopologyError, load_file, load_text
from stormproof.model.policy_file import (
    apply_policy_sets,
    load_policy_set_file,
    read_policy_set_file,
    read_policy_set_text,
)
from stormproof.model.schema import policy_set_schema_text
from stormproof.model.simulate import TopologyScenario, with_policy_set
from stormproof.model.spec import BulkheadSpec, PolicySet, ServicePatch
from stormproof.policies.admission import QueueLimit

ROOT = Path(__file__).resolve().parents[2]

TOPOLOGY = load_text("""\
name: shop
services:
  web:
    workers: 10
    queue_limit: 20
    bulkhead: {max_concurrent: 5}
    service_time: {base: 0.01}
  db:
    workers: 4
    queue_limit: 8
    admission: {kind: queue_limit, max_queue: 4}
    service_time: {base: 0.02}
edges:
  - from: web
    to: db
    client:
      timeout: 0.5
      max_attempts: 3
      breaker: {minimum_calls: 10}
entries:
  users: {target: web, load: {shape: constant, rate: 5}}
fleets:
  hosts: {target: db, size: 10, period: 5}
policy_sets:
  inline:
    services:
      db: {queue_limit: 2}
""")

SET = """\
name: proposal
topology: shop
description: One attempt, no breaker, a bigger db queue without admission
edges:
  web->db: {timeout: 0.4}
fleets:
  hosts: {timeout: 2, max_attempts: 2}
services:
  db:
    queue_limit: 50
    remove: [admission]
  web:
    queue_limit: null
    bulkhead: {max_concurrent: 3}
"""


def problems(text: str, fmt: str = "yaml") -> list[str]:
    with pytest.raises(TopologyError) as caught:
        loaded = read_policy_set_text(text, filename="p." + fmt, format=fmt)
        loaded.check(TOPOLOGY)
    return [str(p) for p in caught.value.problems]


def test_a_file_set_replaces_clients_and_sets_or_removes_protections() -> None:
    loaded = read_policy_set_text(SET, filename="p.yaml")
    assert loaded.topology == "shop"
    topology = apply_policy_sets(TOPOLOGY, [loaded])
    assert [p.name for p in topology.policy_sets] == ["inline", "proposal"]
    changed = with_policy_set(topology, "proposal")
    edge = changed.edges[0].client
    # The client block replaces the whole client: its retries and its breaker are gone.
    assert (edge.timeout, edge.max_attempts, edge.breaker) == (0.4, 1, None)
    assert changed.fleets[0].client.max_attempts == 2
    db, web = changed.service("db"), changed.service("web")
    assert (db.queue_limit, db.admission) == (50, None)
    assert (web.queue_limit, web.bulkhead) == (None, BulkheadSpec(3))
    # Untouched settings stay as written.
    assert changed.entries == TOPOLOGY.entries
    assert with_policy_set(topology, "inline").service("db").admission == QueueLimit(4)


def test_remove_semantics_in_the_python_api() -> None:
    patch = ServicePatch(remove=("queue_limit", "bulkhead"))
    topology = replace(TOPOLOGY, policy_sets=(PolicySet("bare", services=(("web", patch),)),))
    web = with_policy_set(topology, "bare").service("web")
    assert (web.queue_limit, web.bulkhead, web.workers) == (None, None, 10)
    with pytest.raises(ConfigError, match="both set and removed"):
        ServicePatch(queue_limit=3, remove=("queue_limit",))
    with pytest.raises(ConfigError, match="must name one of"):
        ServicePatch(remove=("workers",))
    assert (
        "removes queue_limit, removes bulkhead"
        in PolicySet("bare", services=(("web", patch),)).summary()
    )


def test_schema_problems_carry_the_file_line_and_field() -> None:
    text = SET.replace("queue_limit: 50", "queue_limit: -5").replace(
        "remove: [admission]", "remove: [admision]"
    )
    assert problems(text) == [
        "p.yaml:10: services.db.queue_limit: must be >= 0 (got -5)",
        "p.yaml:11: services.db.remove[0]: must be one of queue_limit, admission, bulkhead "
        "(got 'admision')",
    ]
    assert problems("name: p\nedge: {}\n")[0].startswith("p.yaml:2: edge: unknown field; valid: ")
    assert problems("description: no name\n") == [
        "p.yaml:1: (top level): missing required field(s): name"
    ]


def test_names_the_topology_lacks_are_reported_with_their_lines() -> None:
    text = SET.replace("web->db:", "web->cache:").replace("hosts:", "droplets:")
    assert problems(text) == [
        "p.yaml:5: edges.web->cache: unknown edge 'web->cache'; edges: web->db",
        "p.yaml:7: fleets.droplets: unknown fleet 'droplets'; fleets: hosts",
    ]
    assert problems(SET.replace("topology: shop", "topology: other")) == [
        "p.yaml:2: topology: this set is for topology 'other', not 'shop'"
    ]
    assert problems(SET.replace("name: proposal", "name: inline")) == [
        "p.yaml:1: name: 'inline' is taken; names in use: as_written, inline"
    ]


def test_builder_errors_name_the_nested_field() -> None:
    text = SET.replace(
        "{timeout: 2, max_attempts: 2}",
        "{timeout: 2, backoff: {kind: exponential, base: 2, cap: 1}}",
    )
    assert problems(text) == ["p.yaml:7: fleets.hosts.backoff.cap: must be >= base (2) (got 1)"]
    both = SET.replace("remove: [admission]", "remove: [queue_limit]")
    assert problems(both) == [
        "p.yaml:11: services.db.remove: queue_limit is both set and removed (got 'queue_limit')"
    ]


def test_toml_policy_set_files_have_field_paths(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'name = "proposal"\n[services.db]\nremove = ["admission"]\n[edges."web->db"]\n'
        "timeout = 0\n",
        encoding="utf-8",
    )
    with pytest.raises(TopologyError) as caught:
        load_policy_set_file(path, TOPOLOGY)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}: edges.web->db.timeout: must be > 0 (got 0)"
    ]
    path.write_text(path.read_text().replace("timeout = 0", "timeout = 1"), encoding="utf-8")
    policy_set = load_policy_set_file(path, TOPOLOGY)
    assert policy_set.services == (("db", ServicePatch(remove=("admission",))),)


def test_two_files_with_one_name_clash(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SET, encoding="utf-8")
    loaded = read_policy_set_file(path)
    with pytest.raises(TopologyError, match="'proposal' is taken"):
        apply_policy_sets(TOPOLOGY, [loaded, loaded])


def test_a_file_set_runs_on_the_same_seeds_as_the_others() -> None:
    topology = apply_policy_sets(TOPOLOGY, [read_policy_set_text(SET)])
    scenario = TopologyScenario(topology)
    assert scenario.policy_names == ("as_written", "inline", "proposal")
    assert scenario.run({}, "proposal", 1).policy == "proposal"


def test_the_published_policy_set_schema_is_in_sync() -> None:
    published = ROOT / "docs" / "model" / "policy-set.schema.json"
    assert published.read_text(encoding="utf-8") == policy_set_schema_text()


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples" / "topologies" / "policies").glob("*.yaml"))
)
def test_the_example_policy_set_files_fit_their_topologies(path: Path) -> None:
    loaded = read_policy_set_file(path)
    assert loaded.topology is not None
    loaded.check(load_file(ROOT / "examples" / "topologies" / f"{loaded.topology}.yaml"))
