"""What the event and queue benchmarks share: which peers and servers are here, and the table.

Each benchmark produces rows ``{"case", "ours_per_s", "peer", "peer_per_s", "ratio"}``
(ratio = ours / peer; above 1 is better for stormproof) and prints them as JSON or as a table.
"""

from __future__ import annotations

import importlib.util
import json
import socket
from typing import Any


def has_module(module: str) -> bool:
    """Whether ``module`` can be imported (a peer or an optional back end is installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def port_open(port: int) -> bool:
    """Whether a server answers on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def print_rows(rows: list[dict[str, Any]], *, as_json: bool, ratio_digits: int = 1) -> None:
    """Print the rows as one JSON list, or as a table with the peer and ratio beside each."""
    for row in rows:
        row.setdefault("peer", None)
        row.setdefault("peer_per_s", None)
        row.setdefault("ratio", None)
    if as_json:
        print(json.dumps(rows))
        return
    for row in rows:
        peer = ""
        if row["peer"]:
            peer = (
                f"  {row['peer']}: {row['peer_per_s']:>12,.0f}/s"
                f"  ratio {row['ratio']:.{ratio_digits}f}x"
            )
        print(f"{row['case']:<30} {row['ours_per_s']:>12,.0f}/s{peer}")
