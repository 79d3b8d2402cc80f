"""The one way adapters talk HTTP: a pooled session with explicit timeouts.

Each provider gets its own :class:`HttpClient` and so its own connection pool
(a bulkhead: a stuck provider cannot take the other's connections). Transport
failures come out as :class:`~providers.errors.ProviderError`; HTTP error
statuses are returned to the adapter, which knows the provider's error body.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import time
import zlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from providers import wire
from providers.errors import ProviderError, bad_response
from providers.outbound import OutboundRefused, refused_in
from xrouter_site.errors import ErrorCode

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# Upper bound for one SSE event; a peer that never sends a blank line cannot
# make the gateway buffer without limit.
MAX_SSE_EVENT_BYTES = 4 * 1024 * 1024


#: What :meth:`HttpClient.request` returns: the wire client's response on the
#: hot path, requests' for form posts and auth objects (token endpoints).
UpstreamResponse: TypeAlias = "requests.Response | wire.WireResponse"

# requests (with urllib3, charset_normalizer, idna) is imported when a client
# first needs its session: a worker on the wire client never does, and the
# import is ~6 MB of its RSS (issue 19, bench/profiles/memory-imports.txt).
# Until then no requests response exists, so none of its errors can be
# raised: the read paths below catch the tuple as it is at that moment.
SESSION_ERRORS: tuple[type[Exception], ...] = ()


def session_errors(*others: type[BaseException]) -> tuple[type[BaseException], ...]:
    """``others`` and, once a session exists, requests' and urllib3's errors.

    For ``except`` clauses: evaluated only when something was raised.
    """
    return (*others, *SESSION_ERRORS)


# The monotonic time by which the current request must be answered, set by
# the router around each attempt. Context variables are per greenlet under
# gevent, so concurrent requests do not see each other's deadlines.
_deadline: ContextVar[float | None] = ContextVar("xrouter_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Cap the read timeout of whole-body calls made inside at ``deadline``."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


class HttpClient:
    """Pooled upstream HTTP with timeouts and no retries.

    Calls go through :class:`providers.wire.WireClient` (gevent-friendly
    sockets, a C parser); a form body (``data`` as a mapping) or an
    ``auth`` object goes through a ``requests.Session``, as does everything
    when ``XROUTER_UPSTREAM_CLIENT=requests``. Retries belong to the router
    (one retry layer), so neither retries. ``verify`` is True (certifi's
    CAs), False is refused, or a CA bundle path.
    """

    def __init__(
        self,
        *,
        provider: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        pool_size: int = 256,
        verify: bool | str = True,
    ) -> None:
        if verify is False:
            raise ValueError(
                f"provider {provider}: TLS verification cannot be turned off; "
                "point ca_bundle at the CA certificate instead"
            )
        self.provider = provider
        self.timeout = (connect_timeout, read_timeout)
        self.wire = wire.WireClient(max_idle=pool_size, verify=verify) if _wire_on() else None
        self.verify = verify
        self.pool_size = pool_size
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        """The requests session, built (and requests imported) on first use."""
        if self._session is None:
            self._session = _new_session(self.verify, self.pool_size)
        return self._session

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: bytes | Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: tuple[float, float] | None = None,
        auth: Any = None,
    ) -> UpstreamResponse:
        """Send a request and return the response, whatever its status.

        Raises ProviderError (retryable) on connection errors and timeouts.
        """
        connect, read = timeout or self.timeout
        deadline = _deadline.get()
        if deadline is not None and not stream:
            # A whole-body call must not outlive the request's deadline. A
            # stream keeps its per-read timeout: it may rightly run longer.
            read = max(0.05, min(read, deadline - time.monotonic()))
        all_headers: dict[str, str] = {}
        if json is not None:
            data = orjson.dumps(json)
            all_headers.update(_JSON_HEADERS)
        if headers:
            all_headers.update(headers)
        if self.wire is not None and auth is None and not isinstance(data, Mapping):
            return self._wire_request(
                method, url, data, all_headers, stream=stream, timeout=(connect, read)
            )
        session = self.session
        # Imported by the session's construction; bound here for the handlers.
        import requests
        from urllib3.exceptions import HTTPError as Urllib3HTTPError

        try:
            return session.request(
                method,
                url,
                data=data,
                headers=all_headers,
                stream=stream,
                timeout=(connect, read),
                auth=auth,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise self._timed_out() from exc
        except requests.exceptions.ChunkedEncodingError as exc:
            raise self._stream_cut() from exc
        except (requests.ConnectionError, Urllib3HTTPError) as exc:
            refused = refused_in(exc)
            if refused is not None:
                raise self._address_refused(refused) from exc
            raise self._unreachable() from exc
        except requests.RequestException as exc:
            raise self._failed() from exc

    def _wire_request(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        stream: bool,
        timeout: tuple[float, float],
    ) -> wire.WireResponse:
        """The wire client's call, its failures mapped as requests' are above."""
        assert self.wire is not None
        try:
            return self.wire.request(method, url, data, headers, timeout=timeout, stream=stream)
        except TimeoutError as exc:
            raise self._timed_out() from exc
        except OutboundRefused as exc:
            raise self._address_refused(exc) from exc
        except wire.BodyCut as exc:
            if not exc.after_head:
                raise self._unreachable() from exc
            raise self._stream_cut() from exc
        except (wire.HTTPParseError, zlib.error) as exc:
            raise bad_response(
                self.provider, f"{self.provider} sent a response that is not valid HTTP"
            ) from exc
        except wire.BadHeader as exc:
            raise self._failed() from exc
        except OSError as exc:
            raise self._unreachable() from exc

    # The failures both clients map to, one constructor each.

    def _timed_out(self) -> ProviderError:
        return ProviderError(
            f"{self.provider} did not answer in time",
            provider=self.provider,
            retryable=True,
            status=504,
            code=ErrorCode.UPSTREAM_TIMEOUT,
        )

    def _stream_cut(self) -> ProviderError:
        # The body broke off mid-way: the connection dropped, so another
        # attempt may well succeed.
        return ProviderError(
            f"the response from {self.provider} broke off",
            provider=self.provider,
            retryable=True,
            status=502,
            code=ErrorCode.UPSTREAM_STREAM_CUT,
        )

    def _address_refused(self, reason: Exception) -> ProviderError:
        # Retryable: another deployment of the model may be allowed.
        logger.warning(
            "upstream address refused by the outbound policy",
            extra={"provider": self.provider, "reason": str(reason)},
        )
        return ProviderError(
            f"{self.provider}'s address is refused by the outbound policy",
            provider=self.provider,
            retryable=True,
            status=502,
            code="upstream_address_refused",
        )

    def _failed(self) -> ProviderError:
        return ProviderError(
            f"request to {self.provider} failed",
            provider=self.provider,
            retryable=False,
            status=502,
        )

    def _unreachable(self) -> ProviderError:
        return ProviderError(
            f"could not reach {self.provider}",
            provider=self.provider,
            retryable=True,
            status=502,
            code=ErrorCode.UPSTREAM_UNREACHABLE,
        )

    def post_json(self, url: str, body: Any, **kwargs: Any) -> UpstreamResponse:
        return self.request("POST", url, json=body, **kwargs)

    def get(self, url: str, **kwargs: Any) -> UpstreamResponse:
        return self.request("GET", url, **kwargs)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self.wire is not None:
            self.wire.close()


def _new_session(verify: bool | str, pool_size: int) -> requests.Session:
    global SESSION_ERRORS
    import requests
    from urllib3.exceptions import HTTPError as Urllib3HTTPError

    from providers.outbound_adapter import PolicyHTTPAdapter

    SESSION_ERRORS = (requests.RequestException, Urllib3HTTPError)
    session = requests.Session()
    session.verify = verify
    # Requests otherwise reads proxies and .netrc from the environment on
    # every call, which is slow and surprising for a gateway.
    session.trust_env = False
    # Every new connection goes only to an address the outbound policy
    # allows, checked after DNS resolution (providers.outbound_adapter).
    adapter = PolicyHTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _wire_on() -> bool:
    from django.conf import settings

    return str(getattr(settings, "XROUTER_UPSTREAM_CLIENT", "wire")) == "wire"


def parse_json(response: UpstreamResponse, *, provider: str) -> Any:
    """Return the JSON body or raise a retryable ProviderError if it is not JSON."""

    try:
        return orjson.loads(response.content)
    except session_errors(orjson.JSONDecodeError, *wire.TRANSPORT_ERRORS) as exc:
        raise bad_response(
            provider,
            f"{provider} sent a response that is not valid JSON",
            upstream_status=response.status_code,
        ) from exc


def _body_reader(response: UpstreamResponse) -> Any:
    """The cheapest ``read1`` for a streamed body.

    A stream event costs the gateway one ``read1`` call; urllib3's wraps
    http.client's in content decoding, error translation (a generator-based
    context manager) and bookkeeping, which took about a tenth of the
    relay's CPU. A body that is not content-encoded needs none of that, so
    it is read from the http.client response underneath (which still does
    the chunked framing and honours the socket's read timeout); an encoded
    body goes through urllib3, which decodes it. Errors of both are caught
    by the caller. The wire client's response decodes in its own ``read1``.
    """
    if isinstance(response, wire.WireResponse):
        return response.read1
    raw = response.raw
    fp = getattr(raw, "_fp", None)
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if isinstance(fp, http.client.HTTPResponse) and encoding in ("", "identity"):
        return fp.read1
    # requests leaves raw's decode_content off (it decodes in iter_content):
    # without this a gzip-encoded stream would reach the parser compressed.
    return functools.partial(raw.read1, decode_content=True)


def _read_error(provider: str) -> ProviderError:
    return ProviderError(
        f"the stream from {provider} broke off",
        provider=provider,
        retryable=True,
        status=502,
        code=ErrorCode.UPSTREAM_STREAM_CUT,
    )


#: What a failed read of a streamed body raises, whichever client read it
#: (with session_errors(): requests' and urllib3's once a session exists).
_READ_ERRORS = (http.client.HTTPException, OSError, zlib.error)


def iter_lines(
    response: UpstreamResponse, *, provider: str, max_line: int = MAX_SSE_EVENT_BYTES
) -> Iterator[bytes]:
    """Yield each line of a streamed body as bytes, without its line ending.

    Reads whatever arrives (``read1``), so a line is passed on as soon as its
    newline is in. Bytes are split on newlines only, so a multi-byte
    character split across reads is whole again before anyone decodes it. A
    connection that drops raises a retryable ProviderError; a line longer
    than ``max_line`` a non-retryable one. The response is closed at the end.
    """
    read1 = _body_reader(response)
    buffer = b""
    try:
        while True:
            try:
                chunk = read1(65536)
            except session_errors(*_READ_ERRORS) as exc:
                raise _read_error(provider) from exc
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > max_line:
                raise bad_response(
                    provider,
                    f"{provider} sent an oversized stream line",
                    retryable=False,
                )
            for line in lines:
                yield line.rstrip(b"\r")
        if buffer:
            yield buffer.rstrip(b"\r")
    finally:
        response.close()


def _block_data(block: bytes) -> bytes | None:
    """The ``data`` payload of one event's lines (no blank line inside), or None."""
    data_lines = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data_lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(data_lines) if data_lines else None


def iter_sse_batches(
    response: UpstreamResponse, *, provider: str, max_event: int = MAX_SSE_EVENT_BYTES
) -> Iterator[list[bytes]]:
    """Yield, after each read of the body, the ``data`` of every event it completed.

    One list per upstream read that completed at least one event, in order:
    a relay that writes one list as one client write sends as many events
    per system call as upstream packed into one (under load the socket
    buffers fill, so the busier the gateway, the fewer calls per event;
    issue 19), and an event is never held back once its blank line is in.
    Multi-line ``data`` fields are joined with newlines; comments and other
    fields are skipped.

    The common shape (``data: ...`` lines, ``\\n`` line ends) is cut on
    ``\\n\\n`` in C, one slice per event; a body with any ``\\r`` is read
    line by line from there on, like :func:`iter_lines`. A dropped
    connection raises a retryable ProviderError, an event longer than
    ``max_event`` a non-retryable one. The response is closed at the end.
    """
    read1 = _body_reader(response)
    buffer = b""
    by_line = False
    data_lines: list[bytes] = []
    try:
        while True:
            try:
                chunk = read1(65536)
            except session_errors(*_READ_ERRORS) as exc:
                raise _read_error(provider) from exc
            if not chunk:
                break
            buffer = buffer + chunk if buffer else chunk
            events: list[bytes] = []
            if not by_line and b"\r" in chunk:
                # Only whole events were taken so far: the line reader
                # starts at an event boundary.
                by_line = True
            if by_line:
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    line = line.rstrip(b"\r")
                    if not line:
                        if data_lines:
                            events.append(b"\n".join(data_lines))
                            data_lines = []
                    elif line.startswith(b"data:"):
                        value = line[5:]
                        data_lines.append(value[1:] if value.startswith(b" ") else value)
                    # "event:", "id:", "retry:" and ":" comments carry
                    # nothing the adapters need.
            else:
                end = buffer.rfind(b"\n\n")
                if end >= 0:
                    blocks = buffer[:end].split(b"\n\n")
                    buffer = buffer[end + 2 :]
                    for block in blocks:
                        if block.startswith(b"data: ") and b"\n" not in block:
                            events.append(block[6:])
                        else:
                            payload = _block_data(block)
                            if payload is not None:
                                events.append(payload)
            if len(buffer) > max_event:
                raise bad_response(
                    provider,
                    f"{provider} sent an oversized stream line",
                    retryable=False,
                )
            if events:
                yield events
        # A last event without its blank line still counts.
        if by_line:
            if buffer.rstrip(b"\r").startswith(b"data:"):
                value = buffer.rstrip(b"\r")[5:]
                data_lines.append(value[1:] if value.startswith(b" ") else value)
            if data_lines:
                yield [b"\n".join(data_lines)]
        elif buffer:
            payload = _block_data(buffer)
            if payload is not None:
                yield [payload]
    finally:
        response.close()


def iter_sse_data(response: UpstreamResponse, *, provider: str) -> Iterator[bytes]:
    """Yield the ``data`` payload of each server-sent event as bytes.

    Each event is passed on as soon as its terminating blank line is in;
    see :func:`iter_sse_batches` for the parsing, reading and errors.
    """
    for events in iter_sse_batches(response, provider=provider):
        yield from events


def loads_event(payload: bytes, *, provider: str) -> Any:
    """Decode one streamed JSON event, or raise a retryable ProviderError."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise bad_response(
            provider,
            f"{provider} sent a stream event that is not valid JSON",
        ) from exc


def iter_sse_json(response: UpstreamResponse, *, provider: str) -> Iterator[dict[str, Any]]:
    """Yield each SSE event's JSON object until ``data: [DONE]``.

    For upstreams that end streams OpenAI's way (OpenAI-compatible servers,
    GigaChat). A body that ends without ``[DONE]`` was cut off: that raises
    a retryable ProviderError, as a broken connection does. Events that are
    not JSON objects are skipped.
    """
    for payload in iter_sse_data(response, provider=provider):
        if payload == b"[DONE]":
            return
        data = loads_event(payload, provider=provider)
        if isinstance(data, dict):
            yield data
    raise stream_ended_early(provider)


def stream_ended_early(provider: str) -> ProviderError:
    """Return the error of a stream whose body ended before ``[DONE]``."""
    return ProviderError(
        f"the stream from {provider} ended before it was complete",
        provider=provider,
        retryable=True,
        status=502,
        code=ErrorCode.UPSTREAM_STREAM_CUT,
    )
