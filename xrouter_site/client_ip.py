"""The one answer to "which address is this client?" (issue 15, Medium 12).

Behind a reverse proxy ``REMOTE_ADDR`` is the proxy: every per-address
throttle becomes site-wide and an address allow-list (``/metrics``) lets
the whole internet in. ``X-Forwarded-For`` fixes that only when it is read
the right way, because a client writes whatever it likes into it:

- the header is trusted only when the peer (``REMOTE_ADDR``) is one of
  ``XROUTER_TRUSTED_PROXIES`` (CIDRs, comma-separated; empty by default,
  so the header is ignored);
- it is read from the right: each trusted proxy appends the address it
  saw, so the first hop from the right that is not a trusted proxy is the
  client. Hops a client prepended are to its left and never read.

Every throttle (django-ratelimit through ``RATELIMIT_IP_META_KEY``),
django-axes (``AXES_CLIENT_IP_CALLABLE``) and the ``/metrics`` allow-list
call :func:`client_ip`.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Returned when no address can be told (a Unix-socket peer with no header):
# all such clients share one bucket rather than escaping the throttles.
UNKNOWN = "0.0.0.0"  # noqa: S104 - a bucket name, never bound


@functools.cache
def _trusted(entries: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"XROUTER_TRUSTED_PROXIES: {exc}") from None


def trusted_proxies() -> tuple[Network, ...]:
    """Return the configured trusted proxy networks (validated once)."""
    return _trusted(tuple(settings.XROUTER_TRUSTED_PROXIES))


def _parse(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:51234"
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def client_address(request: HttpRequest | Any) -> Address | None:
    """Return the client's address as an ``ipaddress`` object, or None."""
    meta = request.META
    peer = _parse(meta.get("REMOTE_ADDR", "") or "")
    networks = trusted_proxies()
    if peer is None or not networks or not _is_trusted(peer, networks):
        return peer
    hops = [hop for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # Garbage a trusted proxy passed on: what lies left of it is
            # the client's own writing. Stop at the last hop we can trust.
            return peer
        if not _is_trusted(address, networks):
            return address
        peer = address
    # Every hop is a trusted proxy: the left-most one is the client.
    return peer


def client_ip(request: HttpRequest | Any) -> str:
    """Return the client's address as a string (``UNKNOWN`` if none)."""
    address = client_address(request)
    return str(address) if address is not None else UNKNOWN
