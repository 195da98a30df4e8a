"""The blocking store protocol over an async store, so the sync scenarios test the async API.

(A plain module, like ``store_services``, so test modules import it by a name no ``conftest``
shadows.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stormproof.stores.aio import AsyncIdempotencyStore, ThreadedStore


class BlockingView:
    """Each method of ``store`` run to completion on ``runner``'s event loop.

    One runner (one loop) serves every call of a test, because an async store's connections
    belong to the loop of its first call.
    """

    def __init__(self, store: AsyncIdempotencyStore, runner: asyncio.Runner) -> None:
        self.store = store
        self.url = store.url
        self._runner = runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(method(*args, **kwargs))

        return call


async def drop(store: AsyncIdempotencyStore) -> None:
    """Test-only clean-up of the store's table or keys, native or through the adapter."""
    if isinstance(store, ThreadedStore):
        drop_blocking = getattr(store.store, "drop", None)
        if drop_blocking is not None:
            await asyncio.to_thread(drop_blocking)
        return
    drop_native = getattr(store, "drop", None)
    if drop_native is not None:
        await drop_native()
