"""What the AWS back ends' URLs share: query parameters, region names and endpoint URLs.

``dynamodb://TABLE?region=...&endpoint_url=...`` (the store) and ``sqs://PREFIX?...`` (the
queue) parse their parameters the same way, so a mistake gets the same error from both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from stormproof.errors import ConfigError

__all__ = ["check_endpoint_url", "check_region", "query_parameters"]

# A host label, as botocore requires of region names (it builds endpoint host names from them).
_REGION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")


def query_parameters(url: str, query: str, allowed: Sequence[str], owner: str) -> dict[str, str]:
    """``name=value`` pairs of ``query``, each name in ``allowed`` and given once.

    ``owner`` names the back end in the error for an unknown parameter ("the sqs queue").
    """
    given: dict[str, str] = {}
    for piece in query.split("&") if query else ():
        raw_name, _, raw_value = piece.partition("=")
        name, value = unquote(raw_name), unquote(raw_value)
        if name not in allowed:
            raise ConfigError(
                name or "url", f"is not a parameter of {owner}; use {', '.join(allowed)}", value
            )
        if name in given:
            raise ConfigError(name, "is given more than once", url)
        given[name] = value
    return given


def check_region(region: str | None) -> str | None:
    """``region`` if it is a valid AWS region name (or ``None``)."""
    if region is not None and not _REGION.fullmatch(region):
        raise ConfigError("region", "must be an AWS region name such as us-east-1", region)
    return region


def check_endpoint_url(endpoint_url: str | None) -> str | None:
    """``endpoint_url`` if it is an ``http://`` or ``https://`` URL with a host (or ``None``)."""
    if endpoint_url is None:
        return None
    try:
        endpoint = urlsplit(endpoint_url)
        endpoint.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as error:
        raise ConfigError("endpoint_url", f"is not a valid URL: {error}", endpoint_url) from None
    if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
        raise ConfigError("endpoint_url", "must be an http:// or https:// URL", endpoint_url)
    return endpoint_url
