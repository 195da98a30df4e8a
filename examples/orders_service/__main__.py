"""``python -m examples.orders_service [--host H] [--port P]``: serve the reference service."""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.orders_service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    print(f"orders service on http://{args.host}:{args.port}/orders (metrics at /metrics)")
    uvicorn.run(
        "examples.orders_service.app:app",
        host=args.host,
        port=args.port,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
