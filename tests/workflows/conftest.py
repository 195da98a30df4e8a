"""Make ``tests/stores/store_services.py`` importable for the workflow tests (it picks the
SQLite/PostgreSQL back ends and skips, or fails under STORMPROOF_REQUIRE_SERVICES=1, when a
server is absent). Child processes never import this file."""

from __future__ import annotations

import sys
from pathlib import Path

_STORES = str(Path(__file__).resolve().parent.parent / "stores")
if _STORES not in sys.path:
    sys.path.append(_STORES)
