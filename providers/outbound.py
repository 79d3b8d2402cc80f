"""Where the gateway may connect: the outbound host policy (issue 15, Medium 6; API7).

A provider's ``base_url`` is editable in ``/admin/``, and the gateway sends
the provider's credential to it. Without a policy an admin account (or
whoever got one) could point it at the cloud metadata service
(``169.254.169.254``) or at any host. The policy is checked twice:

- **at save time** (``routing.models.validate_base_url``, so the admin, the
  catalog loader and any ``full_clean()``): host names and IP literals, and
  the addresses the name resolves to when it resolves from here;
- **at call time**, after DNS resolution, on every new upstream connection
  (:mod:`providers.wire`, and ``PolicyHTTPAdapter`` in
  :mod:`providers.outbound_adapter` for requests): each resolved address is checked and the
  socket is opened to the checked address itself, so a name that
  re-resolves to a denied address later (DNS rebinding) is refused too.

Always denied: link-local (``169.254.0.0/16``, ``fe80::/10``), the cloud
metadata addresses and names (``fd00:ec2::254``, ``100.100.100.200``,
``metadata.google.internal``...), unspecified and multicast addresses.
Loopback is denied unless ``XROUTER_OUTBOUND_ALLOW_LOOPBACK`` (default: on in
DEBUG, which ``make run``'s emulators need). ``XROUTER_OUTBOUND_DENY`` adds
networks or host names; ``XROUTER_OUTBOUND_ALLOW_HOSTS``, when set, is the
only list of host names allowed (``*.example.com`` matches subdomains).
Private (RFC 1918) addresses stay allowed: cluster-internal upstreams
(``http://vllm:8000/v1``) are a supported set-up; deny them with
``XROUTER_OUTBOUND_DENY=10.0.0.0/8,...`` where they are not.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALWAYS_DENIED_NETWORKS = (
    "169.254.0.0/16",  # IPv4 link-local, AWS/GCP/Azure/OpenStack metadata
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "0.0.0.0/8",  # "this network": connects to the host itself
    "::/128",
    "224.0.0.0/4",  # multicast
    "ff00::/8",
)
ALWAYS_DENIED_HOSTS = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
)
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


class OutboundRefused(OSError):
    """The policy refuses this host or address; ``str()`` says why."""


@dataclass(frozen=True)
class OutboundPolicy:
    denied_networks: tuple[Network, ...]
    denied_hosts: frozenset[str]
    allowed_hosts: tuple[str, ...]
    allow_loopback: bool

    @classmethod
    def build(
        cls,
        *,
        deny: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        allow_loopback: bool = False,
    ) -> OutboundPolicy:
        networks: list[Network] = []
        hosts = {h.lower() for h in ALWAYS_DENIED_HOSTS}
        for entry in (*ALWAYS_DENIED_NETWORKS, *deny):
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        if not allow_loopback:
            networks.extend(ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS)
        return cls(
            denied_networks=tuple(networks),
            denied_hosts=frozenset(hosts),
            allowed_hosts=tuple(h.strip().lower() for h in allow_hosts if h.strip()),
            allow_loopback=allow_loopback,
        )

    def check_host(self, host: str) -> None:
        """Refuse a host name or IP literal by itself (no DNS)."""
        name = host.lower().rstrip(".").strip("[]")
        literal = _literal(name)
        if literal is not None:
            self.check_address(literal, host=host)
        elif name in self.denied_hosts or name == "localhost" and not self.allow_loopback:
            raise OutboundRefused(f"{host} is not an allowed upstream host")
        if self.allowed_hosts and not any(_matches(name, p) for p in self.allowed_hosts):
            raise OutboundRefused(f"{host} is not in XROUTER_OUTBOUND_ALLOW_HOSTS")

    def check_address(self, address: Address, *, host: str = "") -> None:
        """Refuse a resolved (or literal) address."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network in self.denied_networks:
            if address.version == network.version and address in network:
                shown = f"{host} ({address})" if host and host != str(address) else str(address)
                if address.is_loopback:
                    raise OutboundRefused(
                        f"{shown} is loopback; set XROUTER_OUTBOUND_ALLOW_LOOPBACK=true to allow it"
                    )
                raise OutboundRefused(f"{shown} is in the denied network {network}")

    def resolve(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """Resolve ``host`` and return getaddrinfo entries, all of them allowed.

        One denied address refuses the host: a name that mixes a public and
        a metadata address must not work half the time.
        """
        self.check_host(host)
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        for info in infos:
            self.check_address(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]), host=host)
        return infos

    def check_url(self, url: str, *, resolve: bool = True) -> None:
        """Save-time check of a base URL; DNS only when the name resolves here."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        self.check_host(host)
        if resolve and _literal(host) is None:
            try:
                self.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
            except socket.gaierror:
                # Unknown here (a name only the cluster resolves): the
                # call-time check still sees every address it connects to.
                return


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and name != pattern[2:]
    return name == pattern


@functools.cache
def _policy(deny: tuple[str, ...], allow_hosts: tuple[str, ...], loopback: bool) -> OutboundPolicy:
    return OutboundPolicy.build(deny=deny, allow_hosts=allow_hosts, allow_loopback=loopback)


def current_policy() -> OutboundPolicy:
    """Return the policy from the settings (built once per distinct value)."""
    from django.conf import settings

    return _policy(
        tuple(settings.XROUTER_OUTBOUND_DENY),
        tuple(settings.XROUTER_OUTBOUND_ALLOW_HOSTS),
        bool(settings.XROUTER_OUTBOUND_ALLOW_LOOPBACK),
    )


def refused_in(exc: BaseException) -> OutboundRefused | None:
    """Return the :class:`OutboundRefused` behind a requests/urllib3 error, if any."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OutboundRefused):
            return current
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return None
