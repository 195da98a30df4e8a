"""The version of stormproof (read by the build backend and by ``stormproof.__version__``)."""

__version__ = "0.1.0"
