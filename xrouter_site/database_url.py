"""DATABASE_URL with libpq's multi-host form, for HA PostgreSQL.

    postgres://user:pw@db-a:5432,db-b:5432/xrouter?target_session_attrs=read-write

libpq tries the hosts in order and, with ``target_session_attrs=read-write``,
keeps the first that accepts writes: after a Patroni (or any) failover the
next connection finds the new primary without a restart or a DNS change.
dj-database-url cannot parse a host list, so the list is taken out, the rest
parsed by it, and the hosts handed to libpq as its comma-separated ``host``
and ``port`` parameters (Django passes HOST and PORT through).
"""

from __future__ import annotations

from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def parse(url: str, **options: Any) -> dict[str, Any]:
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not sep or "," not in hosts:
        return dict(dj_database_url.parse(url, **options))
    if not scheme.startswith("postgres"):
        raise ImproperlyConfigured("DATABASE_URL: a host list needs PostgreSQL (postgres://)")
    names, ports = [], []
    for item in (part.strip() for part in hosts.split(",")):
        host, port = item, ""
        if item.startswith("["):
            host, _, port = item[1:].partition("]")
            port = port.removeprefix(":")
        elif ":" in item:
            host, _, port = item.rpartition(":")
        if not host or (port and not port.isdigit()):
            raise ImproperlyConfigured(f"DATABASE_URL: bad host {item!r} in the host list")
        names.append(host)
        ports.append(port or "5432")
    first = f"{scheme}://{userinfo}{at}placeholder{slash}{tail}"
    config = dict(dj_database_url.parse(first, **options))
    config["HOST"] = ",".join(names)
    config["PORT"] = ",".join(ports)
    return config
