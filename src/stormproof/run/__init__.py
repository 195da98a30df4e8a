"""Drivers that run stormproof policies on a real (or manual) clock: sync and asyncio."""

from stormproof.run._common import RetryEvent
from stormproof.run.aio import AsyncRetrying
from stormproof.run.sync import Attempt, Retrying

__all__ = ["AsyncRetrying", "Attempt", "RetryEvent", "Retrying"]
