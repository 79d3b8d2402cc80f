"""A minimal asyncio HTTP/1.1 client for the load drivers.

Why not a library: the drivers run on the same 2 cores as the gateway, so
the client must cost as little CPU as possible and add no hidden queueing
(no pool limits or retries we do not control). It speaks just what our
targets answer: Content-Length or chunked bodies, keep-alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        host = parts.hostname or ""
        # The benchmark only ever loads this machine's loopback interface.
        if not (host == "localhost" or host.startswith("127.")):
            raise SystemExit(f"refusing non-loopback target {url}")
        return cls(host, parts.port or 80, parts.path or "/")


def build_request(
    target: Target, body: bytes, auth: str, accept: str = "application/json"
) -> bytes:
    head = (
        f"POST {target.path} HTTP/1.1\r\n"
        f"Host: {target.host}:{target.port}\r\n"
        "Content-Type: application/json\r\n"
        f"Accept: {accept}\r\n"
        f"Authorization: Bearer {auth}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


@dataclass
class Head:
    status: int
    chunked: bool
    length: int | None
    keep_alive: bool


async def read_head(reader: asyncio.StreamReader) -> Head:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    chunked, length, keep_alive = False, None, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            keep_alive = False
    if not chunked and length is None:
        keep_alive = False  # body ends at EOF
    return Head(status, chunked, length, keep_alive)


async def iter_body(reader: asyncio.StreamReader, head: Head) -> AsyncIterator[bytes]:
    """Yield body pieces as they arrive (streams need them one by one)."""
    if head.chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers (none expected) end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif head.length is not None:
        remaining = head.length
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            yield data
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


async def read_body(reader: asyncio.StreamReader, head: Head) -> int:
    total = 0
    async for piece in iter_body(reader, head):
        total += len(piece)
    return total
