"""Model your own system: topology files, a configuration linter, and simulation.

* :mod:`~stormproof.model.spec` -- the typed API (frozen dataclasses) a topology file becomes;
* :mod:`~stormproof.model.load` -- YAML and TOML loading, validated against
  :mod:`~stormproof.model.schema`, with errors that give the file, line and field;
* :mod:`~stormproof.model.graph` -- whole-graph checks (unknown names, cycles);
* :mod:`~stormproof.model.lint` -- static findings (retry amplification, timeouts, ...);
* :mod:`~stormproof.model.simulate` -- the topology as a runnable scenario on the simulator.

The loader needs PyYAML for YAML files (TOML uses the standard library).
"""

from __future__ import annotations

__all__: list[str] = []
