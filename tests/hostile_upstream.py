"""A hostile OpenAI-compatible upstream: it answers whatever a test scripts.

The emulators speak the wire format faithfully; this one lies on purpose
(absurd usage counts, secrets in error messages, broken stream events), so
tests can send the gateway what a compromised or buggy provider would::

    with hostile_upstream() as upstream:
        upstream.reply = Reply(body={...})            # plain JSON answer
        upstream.reply = Reply(stream=[b"data: ...\\n\\n"])  # raw SSE bytes

It binds to 127.0.0.1 on a free port and serves each request in a thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    # Raw SSE frames, sent one by one (a stream answer when set).
    stream: list[bytes] | None = None


@dataclass
class HostileUpstream:
    base_url: str
    reply: Reply = field(default_factory=Reply)
    requests: list[dict[str, Any]] = field(default_factory=list)


def completion(*, prompt_tokens: int = 3, completion_tokens: int = 2) -> dict[str, Any]:
    """Return a well-formed chat completion with the given usage claim."""
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-mock",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@contextlib.contextmanager
def hostile_upstream() -> Iterator[HostileUpstream]:
    state: dict[str, HostileUpstream] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            upstream = state["upstream"]
            length = int(self.headers.get("Content-Length") or 0)
            upstream.requests.append(orjson.loads(self.rfile.read(length) or b"{}"))
            reply = upstream.reply
            if reply.stream is not None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for frame in reply.stream:
                    self.wfile.write(frame)
                    self.wfile.flush()
                self.close_connection = True
                return
            payload = orjson.dumps(reply.body)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["upstream"] = HostileUpstream(base_url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, name="hostile-upstream", daemon=True)
    thread.start()
    try:
        yield state["upstream"]
    finally:
        server.shutdown()
        server.server_close()
