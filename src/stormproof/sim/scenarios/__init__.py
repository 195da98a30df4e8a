"""The scenario catalogue: golden models and incident replays, by name."""

from __future__ import annotations

from stormproof.errors import ConfigError
from stormproof.sim.scenario import Scenario
from stormproof.sim.scenarios.dwfm_2025 import Dwfm2025
from stormproof.sim.scenarios.dynamodb_dns import DynamoDbDns
from stormproof.sim.scenarios.ebs_2011 import Ebs2011
from stormproof.sim.scenarios.lambda_2025 import Lambda2025
from stormproof.sim.scenarios.network_manager_2025 import NetworkManager2025
from stormproof.sim.scenarios.nlb_2025 import Nlb2025
from stormproof.sim.scenarios.occ_jitter import OccJitter
from stormproof.sim.scenarios.simple_collapse import SimpleCollapse
from stormproof.sim.scenarios.us_east_1_2025 import USEast12025

__all__ = ["OccJitter", "SimpleCollapse", "get", "names"]

_CATALOGUE: dict[str, type[Scenario]] = {
    DynamoDbDns.name: DynamoDbDns,
    Dwfm2025.name: Dwfm2025,
    Ebs2011.name: Ebs2011,
    Lambda2025.name: Lambda2025,
    NetworkManager2025.name: NetworkManager2025,
    Nlb2025.name: Nlb2025,
    OccJitter.name: OccJitter,
    SimpleCollapse.name: SimpleCollapse,
    USEast12025.name: USEast12025,
}


def names() -> list[str]:
    """Names of every scenario, sorted."""
    return sorted(_CATALOGUE)


def get(name: str) -> Scenario:
    """A new instance of the scenario called ``name``; unknown names list the valid ones."""
    cls = _CATALOGUE.get(name)
    if cls is None:
        raise ConfigError("scenario", f"{name!r} is unknown; valid: {', '.join(names())}")
    return cls()
