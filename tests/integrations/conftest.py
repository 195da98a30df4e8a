"""Fixtures the HTTP client tests share: a fault server and a manual clock per test.

Child processes never import this file (the one subprocess here runs a benchmark script).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_faults import FaultServer

from stormproof import ManualClock


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A fault server for one test, closed after it."""
    running = FaultServer()
    yield running
    running.close()


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock for one test (its ``sleeps`` are the waits a policy asked for)."""
    return ManualClock()
