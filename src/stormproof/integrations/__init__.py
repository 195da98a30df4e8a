"""Adapters that apply stormproof policies inside the clients and frameworks people already run.

Each adapter is its own module and needs its own optional extra (``stormproof[httpx]``,
``stormproof[requests]``, ``stormproof[aiohttp]``, ``stormproof[asgi]``, ``stormproof[grpc]``,
``stormproof[celery]``, ``stormproof[dramatiq]``; botocore comes with ``stormproof[aws]``), so
importing this package imports none of them.
"""
