"""Loading topology files: YAML errors carry line numbers, TOML errors field paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stormproof.model.load import TopologyError, load_file, load_text, read_text
from stormproof.model.schema import schema_text
from stormproof.model.spec import ClientSpec, EdgeSpec, ServiceSpec, ServiceTime, Topology
from stormproof.policies.backoff import Exponential, Jitter

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "topologies").glob("*.yaml"))

GOOD = """\
name: shop
services:
  web:
    workers: 10
    service_time: {base: 0.01}
  db:
    workers: 4
    queue_limit: 8
    service_time: {base: 0.02}
edges:
  - from: web
    to: db
    client:
      timeout: 0.5
      max_attempts: 2
      backoff: {kind: exponential, base: 0.1, cap: 1, jitter: full}
entries:
  users: {target: web, load: {shape: constant, rate: 5}}
"""


def problems(text: str, fmt: str = "yaml") -> list[str]:
    with pytest.raises(TopologyError) as caught:
        load_text(text, filename="t." + fmt, format=fmt)
    return [str(p) for p in caught.value.problems]


def test_a_valid_file_builds_the_typed_objects() -> None:
    topology = load_text(GOOD)
    assert topology.service("db") == ServiceSpec("db", ServiceTime(0.02), workers=4, queue_limit=8)
    edge = topology.edges[0]
    assert edge == EdgeSpec(
        "web",
        "db",
        ClientSpec(
            timeout=0.5,
            max_attempts=2,
            backoff=Exponential(base=0.1, cap=1, jitter=Jitter.FULL),
        ),
    )
    assert isinstance(topology, Topology)


def test_wrong_type_is_reported_with_its_line_and_field() -> None:
    text = GOOD.replace("workers: 4", "workers: four")
    assert problems(text) == [
        "t.yaml:7: services.db.workers: must be of type integer or null (got 'four')"
    ]


def test_out_of_range_and_unknown_fields_are_all_reported_in_line_order() -> None:
    text = GOOD.replace("max_attempts: 2", "max_attempts: 0").replace(
        "queue_limit: 8", "queue_limt: 8"
    )
    found = problems(text)
    assert len(found) == 2
    assert found[0].startswith("t.yaml:8: services.db.queue_limt: unknown field; valid: ")
    assert found[1] == "t.yaml:15: edges[0].client.max_attempts: must be >= 1 (got 0)"


def test_unknown_service_in_an_edge_names_the_valid_ones() -> None:
    text = GOOD.replace("to: db", "to: dbb")
    assert problems(text) == ["t.yaml:12: edges[0].to: unknown service 'dbb'; services: web, db"]


def test_a_cycle_is_an_error_unless_allowed() -> None:
    cyclic = GOOD.replace("entries:", "  - {from: db, to: web}\nentries:")
    assert (
        "edges: the edges form a cycle (web -> db -> web); set allow_cycles: true"
        in (problems(cyclic)[0])
    )
    assert load_text("allow_cycles: true\n" + cyclic).allow_cycles


def test_a_semantic_error_from_the_policy_objects_names_the_nested_field() -> None:
    text = GOOD.replace("base: 0.1, cap: 1", "base: 2, cap: 1")
    assert problems(text) == ["t.yaml:16: edges[0].client.backoff.cap: must be >= base (2) (got 1)"]


def test_tagged_variants_report_the_variants_fields() -> None:
    text = GOOD.replace("{shape: constant, rate: 5}", "{shape: spike, rate: 5}")
    assert problems(text) == [
        "t.yaml:18: entries.users.load: missing required field(s): spike_rate, start, duration"
    ]


def test_duplicate_keys_and_bad_yaml_are_reported_with_lines() -> None:
    assert problems(GOOD.replace("    queue_limit: 8", "    workers: 5")) == [
        "t.yaml:8: services.db.workers: duplicate key"
    ]
    assert problems("name: [unclosed\n")[0].startswith("t.yaml:2: (file): not valid YAML")


def test_trigger_targets_and_windows_are_checked() -> None:
    text = GOOD + (
        "horizon: 30\n"
        "triggers:\n"
        "  t1: {kind: outage, target: cache, start: 1, duration: 2}\n"
        "  t2: {kind: load_spike, target: users, start: 25, duration: 10, rate: 9}\n"
        "  t3: {kind: capacity_loss, target: web, start: 1, duration: 1, fraction: 0.5}\n"
    )
    assert problems(text) == [
        "t.yaml:21: triggers.t1.target: unknown service 'cache'; services: web, db",
        "t.yaml:22: triggers.t2.duration: the window ends after the horizon (30 s)",
    ]


TOML = """\
name = "shop"
[services.web]
workers = 10
service_time = { base = 0.01 }
[[edges]]
from = "web"
to = "nowhere"
[entries.users]
target = "web"
load = { shape = "constant", rate = -1 }
"""


def test_toml_problems_give_the_field_path_without_a_line() -> None:
    assert problems(TOML, "toml") == [
        "t.toml: entries.users.load.rate: must be >= 0 (got -1)",
    ]
    fixed = TOML.replace("rate = -1", "rate = 1")
    assert problems(fixed, "toml") == [
        "t.toml: edges[0].to: unknown service 'nowhere'; services: web"
    ]
    assert problems("name = \n", "toml")[0].startswith("t.toml:1: (file): not valid TOML")


def test_toml_and_yaml_build_the_same_topology() -> None:
    toml = TOML.replace("rate = -1", "rate = 5").replace('"nowhere"', '"web2"') + (
        "[services.web2]\nservice_time = { base = 0.01 }\n"
    )
    yaml_text = (
        "name: shop\nservices:\n  web: {workers: 10, service_time: {base: 0.01}}\n"
        "  web2: {service_time: {base: 0.01}}\nedges: [{from: web, to: web2}]\n"
        "entries:\n  users: {target: web, load: {shape: constant, rate: 5}}\n"
    )
    assert load_text(toml, format="toml") == load_text(yaml_text)


def test_lines_are_kept_for_later_messages() -> None:
    loaded = read_text(GOOD)
    assert loaded.line(("edges", 0, "client", "timeout")) == 14
    assert loaded.line(("services", "db", "nothing-here")) == 6


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_examples_load(path: Path) -> None:
    assert load_file(path).services


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"must end in \.yaml"):
        load_file(tmp_path / "t.json")
    with pytest.raises(TopologyError, match="cannot be read"):
        load_file(tmp_path / "t.yaml")


def test_the_published_schema_is_in_sync() -> None:
    published = ROOT / "docs" / "model" / "topology.schema.json"
    assert published.read_text(encoding="utf-8") == schema_text(), (
        'run: python -c "from stormproof.model.schema import write_schema; '
        "write_schema('docs/model/topology.schema.json')\""
    )
    json.loads(published.read_text(encoding="utf-8"))


def test_the_format_reference_example_loads() -> None:
    text = (ROOT / "docs" / "model" / "topology.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    topology = load_text(block)
    assert [s.name for s in topology.services] == ["web", "db"]
    assert topology.policy_sets[0].services[0][0] == "db"
