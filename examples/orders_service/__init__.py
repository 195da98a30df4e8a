"""The stormproof reference service: an "order placed" flow that holds up under bursts.

See README.md in this directory. Run it with ``python -m examples.orders_service`` or
``uvicorn examples.orders_service.app:app`` from the repository root.
"""
