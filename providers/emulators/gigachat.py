"""GigaChat emulator: the OAuth host, the classic v1 API and v2 chat in one process.

Wire formats follow ``shared/specs/gigachat-api.md`` (real traffic recorded
by the official SDK), so the official ``gigachat`` SDK and our adapter
cannot tell this process from Sber's hosts:

* ``POST /api/v2/oauth`` (the OAuth host): ``Authorization: Basic <key>``,
  ``RqUID: <uuid4>``, form body ``scope=...``; answers
  ``{"access_token", "expires_at"}`` with ``expires_at`` in Unix
  **milliseconds**. Errors use the OAuth shape ``{"code", "message"}``:
  missing or malformed ``RqUID`` -> 400, no scope -> 400 code 5, unknown
  scope -> 400 code 3, undecodable key -> 400 code 4, wrong key (with the
  ``credentials`` knob) -> 401 code 6, key of another scope (with the
  ``scope`` knob) -> 400 code 7, more than ``oauth_rps`` token requests in
  one second -> 429 (the real host allows about 10 per second).
* ``/api/v1/...`` (the API host): every route needs ``Authorization:
  Bearer <token issued here and not expired>``, else 401 ``{"status": 401,
  "message": "Unauthorized"}`` (``"Token has expired"`` for expired ones).
  Errors use ``{"status", "message"}``. Responses carry ``X-Request-ID``
  and ``X-Session-ID`` (echoed, or server-generated uuids) and echo
  ``X-Client-ID``.
* ``POST /api/v1/chat/completions``: plain and SSE (``data:`` lines,
  ``object: "chat.completion"`` on chunks too, usage only on the chunk with
  ``finish_reason``, then ``data: [DONE]``). ``model`` is answered as
  ``<model>:<model_version>``. Function calls use ``functions`` /
  ``function_call`` with ``arguments`` as a JSON **object**, one call per
  turn, plus a ``functions_state_id`` uuid.
* ``POST /api/v2/chat/completions``: the v2 contract, see
  :mod:`providers.emulators.gigachat_v2`.
* ``GET /api/v1/models``, ``GET /api/v1/models/{id}``, ``POST
  /api/v1/embeddings`` (per-item usage, no top-level usage), ``POST
  /api/v1/tokens/count`` (a bare JSON array), ``GET /api/v1/balance``.

Deterministic behaviour (tests rely on it):

* Reply text: ``"Ответ: Echo: "`` + the first 50 words of the last user
  message; after a ``function`` result: ``"Ответ: Function result: "`` + its
  first 50 words. ``max_tokens`` keeps the first N words (``length``).
* Tokens are whitespace-separated words: ``prompt_tokens`` is the sum over
  messages of ``1 + words`` (function calls count name and arguments) plus
  5 per function spec. ``precached_prompt_tokens`` is the larger of the
  ``precached_tokens`` knob and, when the request repeats an
  ``X-Session-ID``, the previous prompt size of that session (the real
  service caches per session), capped at the prompt size. As on the real
  service the cached part is reported on top: ``prompt_tokens`` is the
  prompt size minus ``precached_prompt_tokens`` and ``total_tokens`` is
  ``prompt_tokens + completion_tokens``.
* Function schemas using ``$ref``, ``anyOf``/``oneOf`` or a list of types
  are refused with 422 (``strict_schemas``, default on); with
  ``reject_state_ids`` a ``functions_state_id`` in history is a 422 too.
* A system message asking for a "JSON object" gets
  ``{"answer": "Echo: ..."}`` back inside a Markdown ``json`` fence.
* Function calling: with ``functions`` and ``function_call`` not ``"none"``,
  the reply is a function call when ``function_call`` names a function or
  the last message is a user message containing "weather". The function is
  the named one, else the first whose name contains "weather", else the
  first. Arguments fill every schema property: location/city/place strings
  get the capitalised word after "in" (default "Moscow"), other strings
  "mock", enums their first value, numbers 1, booleans true, objects
  recurse.
* ``response_format`` ``{"type": "json_schema", "schema": ...}``: the reply
  content is a JSON document generated from the schema the same way.
* The ``finish_reason`` knob forces ``length`` (reply cut to half its
  words), ``blacklist`` (Sber's canned refusal), ``function_call`` (a call
  whenever functions are given) or ``error``.

Extra knobs: ``token_ttl_s`` (token lifetime; tests shorten it to make
tokens expire), ``credentials``/``scope`` (accept only that key/scope),
``oauth_rps``, ``finish_reason``, ``model_version``, ``precached_tokens``,
``strict_schemas``, ``reject_state_ids``,
``embedding_dim``, ``balance_forbidden`` (``/balance`` answers 403 as for
non-prepaid accounts), ``max_concurrent`` (more in-flight chat requests
than this -> 429, like the personal tier's single stream).

Extra stats in ``/_emulator/stats``: ``token_requests`` (every request to
the OAuth route, whatever its outcome), ``tokens_issued``,
``oauth_rate_limited``, ``auth_failures`` (API requests answered 401 for a
bad or expired token) and ``tokens_active``.

Extra control endpoint: ``POST /_emulator/gigachat/expire_tokens`` makes
every token issued so far expired, as if the client's clock ran behind the
server's; the next API call with one answers 401 ``Token has expired``.
``/_emulator/reset`` zeroes the counters but keeps issued tokens valid, as
a real server would.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from werkzeug.wsgi import ClosingIterator

from providers.emulators.base import (
    ConfigError,
    Emulator,
    EmulatorConfig,
    HTTPError,
    Request,
    Response,
    StreamResponse,
    json_response,
    sse_response,
)
from providers.emulators.gigachat_text import (
    JSON_ASKED_RE,
    PLACE_RE,
    REPLY_PREFIX,
    WEATHER_RE,
    echo_words,
    fake_value,
    reasoning_text,
)
from providers.emulators.gigachat_v2 import V2_PATH, ChatV2
from providers.emulators.openai import count_tokens, embedding_vector
from providers.emulators.tokenizer import GIGACHAT

__all__ = ["CHAT_MODELS", "EMBEDDING_MODELS", "EMULATOR", "GigaChatConfig", "GigaChatEmulator"]

OAUTH_PATH = "/api/v2/oauth"
API_PREFIX = "/api/v1"

#: The real listing (main host, Jan 2026) plus GigaChat-3-Ultra from 2026
#: SDK recordings: id -> type.
MODELS: dict[str, str] = {
    "GigaChat": "chat",
    "GigaChat-2": "chat",
    "GigaChat-2-Max": "chat",
    "GigaChat-2-Max-preview": "chat",
    "GigaChat-2-Pro": "chat",
    "GigaChat-2-Pro-preview": "chat",
    "GigaChat-2-preview": "chat",
    "GigaChat-3-Ultra": "chat",
    "GigaChat-Max": "chat",
    "GigaChat-Max-preview": "chat",
    "GigaChat-Plus": "chat",
    "GigaChat-Pro": "chat",
    "GigaChat-Pro-preview": "chat",
    "GigaChat-preview": "chat",
    "GigaFilter": "filter",
    "GigaCheckClassification": "aicheck",
    "GigaCheckDetection": "aicheck",
    "Embeddings": "embedder",
    "Embeddings-2": "embedder",
    "EmbeddingsGigaR": "embedder",
    "GigaEmbeddings-3B-2025-09": "embedder",
}
CHAT_MODELS = tuple(m for m, kind in MODELS.items() if kind == "chat")
EMBEDDING_MODELS = tuple(m for m, kind in MODELS.items() if kind == "embedder")

SCOPES = frozenset({"GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"})
ROLES = frozenset(
    {"system", "user", "assistant", "function", "search_result", "function_in_progress"}
)
FINISH_REASONS = ("", "stop", "length", "function_call", "blacklist", "error")
#: What GigaChat answers when a topic is on Sber's blacklist.
BLACKLIST_REPLY = (
    "Не люблю менять тему разговора, но вот сейчас тот самый случай. "
    "Давайте поговорим о чём-нибудь другом?"
)
_RQUID_RE = re.compile(r"^[0-9a-fA-F-]{36}$")
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _unsupported_schema_part(node: object, path: str = "") -> str:
    """Return where a schema uses what GigaChat refuses, or "" if nothing."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            found = _unsupported_schema_part(item, f"{path}[{index}]")
            if found:
                return found
        return ""
    if not isinstance(node, dict):
        return ""
    for key in ("$ref", "anyOf", "oneOf"):
        if key in node:
            return f"{path or '.'} uses {key}, which is not supported"
    if isinstance(node.get("type"), list):
        return f"{path or '.'} has a list of types, which is not supported"
    for key, value in node.items():
        if key in ("enum", "default", "examples", "const"):
            continue
        found = _unsupported_schema_part(value, f"{path}.{key}")
        if found:
            return found
    return ""


#: Sessions remembered for prompt-cache accounting; old ones drop out first.
MAX_SESSIONS = 10_000


@dataclass
class GigaChatConfig(EmulatorConfig):
    """Knobs of the GigaChat emulator on top of the common ones."""

    token_ttl_s: float = field(
        default=1800.0, metadata={"help": "lifetime of issued access tokens in seconds"}
    )
    credentials: str = field(
        default="", metadata={"help": "the only accepted authorization key (empty: any)"}
    )
    scope: str = field(
        default="", metadata={"help": "the only scope the key may ask for (empty: any)"}
    )
    oauth_rps: int = field(
        default=10, metadata={"help": "token requests allowed per second (0: unlimited)"}
    )
    finish_reason: str = field(
        default="",
        metadata={"help": "force a finish reason: length|blacklist|function_call|error"},
    )
    model_version: str = field(
        default="2.0.28.2", metadata={"help": "version appended to the model name"}
    )
    precached_tokens: int = field(
        default=0, metadata={"help": "prompt tokens reported as precached"}
    )
    embedding_dim: int = field(default=1024, metadata={"help": "embedding vector size"})
    balance_forbidden: bool = field(
        default=False, metadata={"help": "answer /balance with 403 (not a prepaid account)"}
    )
    strict_schemas: bool = field(
        default=True,
        metadata={"help": "422 for $ref, anyOf/oneOf and type arrays in function schemas"},
    )
    reject_state_ids: bool = field(
        default=False,
        metadata={"help": "422 for functions_state_id in history (some deployments do)"},
    )
    max_concurrent: int = field(
        default=0, metadata={"help": "in-flight chat requests before 429 (0: unlimited)"}
    )

    def validate(self) -> None:
        """Check the GigaChat knobs after the common ones."""
        super().validate()
        if self.token_ttl_s <= 0:
            raise ConfigError("token_ttl_s must be > 0", "token_ttl_s")
        if self.scope and self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {sorted(SCOPES)}", "scope")
        if self.oauth_rps < 0:
            raise ConfigError("oauth_rps must be >= 0", "oauth_rps")
        if self.finish_reason not in FINISH_REASONS:
            raise ConfigError(
                "finish_reason must be one of " + "|".join(FINISH_REASONS[1:]), "finish_reason"
            )
        if self.precached_tokens < 0:
            raise ConfigError("precached_tokens must be >= 0", "precached_tokens")
        if not 1 <= self.embedding_dim <= 8192:
            raise ConfigError("embedding_dim must be within 1..8192", "embedding_dim")
        if self.max_concurrent < 0:
            raise ConfigError("max_concurrent must be >= 0", "max_concurrent")


def _oauth_error(status: int, code: int, message: str) -> HTTPError:
    """Build an error in the OAuth host's ``{"code", "message"}`` shape."""
    return HTTPError(status, message, code=str(code), error_type="oauth")


def _invalid(message: str) -> HTTPError:
    return HTTPError(422, f"Invalid params: {message}")


def _split_text(text: str, pieces: int) -> list[str]:
    """Split ``text`` into at most ``pieces`` non-empty runs of whole characters."""
    if not text:
        return []
    count = min(pieces, len(text))
    size, extra = divmod(len(text), count)
    out, pos = [], 0
    for index in range(count):
        step = size + (1 if index < extra else 0)
        out.append(text[pos : pos + step])
        pos += step
    return out


@dataclass
class _Reply:
    content: str
    function_call: dict[str, Any] | None
    finish_reason: str
    completion_tokens: int
    # The SDK's Messages.reasoning_content, sent when reasoning_effort asks.
    reasoning: str | None = None


class GigaChatEmulator(Emulator):
    """Emulates ``ngw.devices.sberbank.ru`` OAuth and the GigaChat v1 API."""

    kind = "gigachat"
    config_class = GigaChatConfig
    config: GigaChatConfig

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        """Create the app with no tokens issued yet."""
        # token -> expiry in epoch ms; only this process's tokens are valid.
        self.tokens: dict[str, int] = {}
        self.sessions: dict[str, int] = {}
        self.oauth_window: deque[float] = deque()
        self.in_flight = 0
        self.v2 = ChatV2(self)
        self._zero_counters()
        super().__init__(config)

    def _zero_counters(self) -> None:
        self.token_requests = 0
        self.tokens_issued = 0
        self.oauth_rate_limited = 0
        self.auth_failures = 0

    # ---- framework hooks -------------------------------------------------

    def register_routes(self) -> None:
        """Mount the OAuth route, the v1 API and the extra control endpoint."""
        self.route("POST", OAUTH_PATH, self.oauth)
        self.route("POST", f"{API_PREFIX}/chat/completions", self.chat_completions)
        self.route("POST", V2_PATH, self.v2.handle)
        self.route("GET", f"{API_PREFIX}/models", self.list_models)
        self.route("GET", f"{API_PREFIX}/models/<path:model_id>", self.retrieve_model)
        self.route("POST", f"{API_PREFIX}/embeddings", self.embeddings)
        self.route("POST", f"{API_PREFIX}/tokens/count", self.tokens_count)
        self.route("GET", f"{API_PREFIX}/balance", self.balance)
        self.route("POST", "/_emulator/gigachat/expire_tokens", self._expire_tokens, control=True)

    def error_payload(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> object:
        """Return the OAuth host's or the API host's error shape."""
        if error_type == "oauth":
            return {"code": int(code or status), "message": message}
        return {"status": status, "message": message}

    def malformed_body(self) -> bytes:
        """Return a truncated GigaChat completion for the ``malformed`` fault."""
        return '{"choices": [{"message": {"role": "assistant", "content": "Отв'.encode()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Serve a request, enforcing ``max_concurrent`` on chat requests.

        The personal tier allows one request at a time; counting happens
        around the whole response (a stream stays in flight until its last
        byte), which only a wrapper of the WSGI iterable can see.
        """
        cap = self.config.max_concurrent
        if not cap or environ.get("PATH_INFO") not in (f"{API_PREFIX}/chat/completions", V2_PATH):
            return super().__call__(environ, start_response)
        if self.in_flight >= cap:
            self.stats.record_request(Request(environ), "concurrency")
            refusal: Iterable[bytes] = self.error(429, "Too many requests")(environ, start_response)
            return refusal

        def done() -> None:
            self.in_flight -= 1

        self.in_flight += 1
        try:
            result = super().__call__(environ, start_response)
        except BaseException:
            done()
            raise
        # The server closes the iterable when the last byte went out (or the
        # client left), which is when the request stops being in flight.
        return ClosingIterator(result, done)

    def _get_stats(self, request: Request) -> Response:
        now_ms = int(time.time() * 1000)
        snapshot = self.stats.snapshot()
        snapshot.update(
            token_requests=self.token_requests,
            tokens_issued=self.tokens_issued,
            oauth_rate_limited=self.oauth_rate_limited,
            auth_failures=self.auth_failures,
            tokens_active=sum(1 for exp in self.tokens.values() if exp > now_ms),
            in_flight=self.in_flight,
        )
        return json_response(snapshot)

    def _reset(self, request: Request) -> Response:
        self._zero_counters()
        self.oauth_window.clear()
        self.sessions.clear()
        return super()._reset(request)

    def _expire_tokens(self, request: Request) -> Response:
        expired_at = int(time.time() * 1000) - 1
        for token in self.tokens:
            self.tokens[token] = expired_at
        return json_response({"expired": len(self.tokens)})

    # ---- OAuth -----------------------------------------------------------

    def oauth(self, request: Request) -> Response:
        """Handle ``POST /api/v2/oauth``: an authorization key -> a bearer token."""
        self.token_requests += 1
        now = time.monotonic()
        if self.config.oauth_rps:
            while self.oauth_window and now - self.oauth_window[0] >= 1.0:
                self.oauth_window.popleft()
            if len(self.oauth_window) >= self.config.oauth_rps:
                self.oauth_rate_limited += 1
                raise _oauth_error(429, 429, "Too Many Requests")
            self.oauth_window.append(now)
        rquid = request.headers.get("rquid") or ""
        if not _RQUID_RE.match(rquid):
            raise _oauth_error(400, 400, "Bad Request")
        scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "basic" or not key:
            raise _oauth_error(401, 4, "Can't decode 'Authorization' header")
        try:
            base64.b64decode(key, validate=True)
        except (ValueError, binascii.Error):
            raise _oauth_error(400, 4, "Can't decode 'Authorization' header") from None
        if self.config.credentials and key != self.config.credentials:
            raise _oauth_error(401, 6, "credentials doesn't match db data")
        form = parse_qs(request.get_data(as_text=True))
        scope = (form.get("scope") or [""])[0].strip()
        if not scope:
            raise _oauth_error(400, 5, "scope is empty")
        if scope not in SCOPES:
            raise _oauth_error(400, 3, "scope data format invalid")
        if self.config.scope and scope != self.config.scope:
            raise _oauth_error(
                400, 7, "invalid token request: scope from db not fully includes consumed scope"
            )
        now_ms = int(time.time() * 1000)
        # Forget tokens long dead so a long benchmark does not grow the dict.
        for token in [t for t, exp in self.tokens.items() if exp < now_ms - 3_600_000]:
            del self.tokens[token]
        token = "eyJjdHkiOiJqd3QiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIn0." + secrets.token_urlsafe(96)
        expires_at = now_ms + int(self.config.token_ttl_s * 1000)
        self.tokens[token] = expires_at
        self.tokens_issued += 1
        return json_response({"access_token": token, "expires_at": expires_at})

    # ---- shared API checks ---------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        expires_at = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires_at is None:
            self.auth_failures += 1
            raise HTTPError(401, "Unauthorized")
        if expires_at <= int(time.time() * 1000):
            self.auth_failures += 1
            raise HTTPError(401, "Token has expired")

    @staticmethod
    def _x_headers(request: Request) -> list[tuple[str, str]]:
        """Echo the tracing headers; the real API makes up the ids it was not sent."""
        headers = [
            ("X-Request-ID", request.headers.get("x-request-id") or str(uuid.uuid4())),
            ("X-Session-ID", request.headers.get("x-session-id") or str(uuid.uuid4())),
        ]
        if request.headers.get("x-client-id"):
            headers.append(("X-Client-ID", request.headers.get("x-client-id") or ""))
        return headers

    def _body(self, request: Request) -> dict[str, Any]:
        self._authenticate(request)
        try:
            return request.json_object()
        except ValueError:
            raise HTTPError(400, "Your request contains invalid JSON syntax.") from None

    @staticmethod
    def _known_model(body: dict[str, Any], types: Iterable[str]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("model is required")
        if MODELS.get(model) not in set(types):
            raise HTTPError(404, "No such model")
        return model

    # ---- chat --------------------------------------------------------------

    def chat_completions(self, request: Request) -> Response | StreamResponse:
        """Handle ``POST /api/v1/chat/completions`` (plain and SSE)."""
        body = self._body(request)
        model = self._known_model(body, ("chat",))
        messages = self._messages(body.get("messages"))
        if self.config.reject_state_ids and any("functions_state_id" in m for m in messages):
            raise _invalid("messages.functions_state_id: extra fields not permitted")
        functions = self._functions(body.get("functions"), strict=self.config.strict_schemas)
        function_call = body.get("function_call")
        self._check_function_call(function_call, functions)
        self._check_sampling(body)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise HTTPError(400, "Your request contains invalid JSON syntax.")

        reply = self._reply(body, messages, functions, function_call)
        if reply.function_call is None:
            last_user = next(
                (m.get("content", "") for m in reversed(messages) if m["role"] == "user"), ""
            )
            reply.reasoning = reasoning_text(body.get("reasoning_effort"), last_user)
        prompt_tokens = self._prompt_tokens(messages, functions)
        cached = self._session_cache(request, prompt_tokens)
        # GigaChat reports the cached part of the prompt on top of the part it
        # processed: prompt_tokens excludes it, total_tokens too.
        cached = min(cached, prompt_tokens)
        usage = {
            "prompt_tokens": prompt_tokens - cached,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": prompt_tokens - cached + reply.completion_tokens,
            "precached_prompt_tokens": cached,
        }
        served = f"{model}:{self.config.model_version}"
        created = int(time.time())
        headers = self._x_headers(request)
        if stream:
            return self._stream(served, created, reply, usage, headers)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        if reply.function_call is not None:
            message["function_call"] = reply.function_call
            message["functions_state_id"] = str(uuid.uuid4())
        return json_response(
            {
                "choices": [{"message": message, "index": 0, "finish_reason": reply.finish_reason}],
                "created": created,
                "model": served,
                "object": "chat.completion",
                "usage": usage,
            },
            headers=headers,
        )

    def _session_cache(self, request: Request, prompt_tokens: int) -> int:
        """Return the prompt tokens cached for this request's X-Session-ID (and remember it)."""
        session = request.headers.get("x-session-id")
        cached = self.config.precached_tokens
        if session:
            cached = max(cached, self.sessions.get(session, 0))
            self.sessions.pop(session, None)
            self.sessions[session] = prompt_tokens
            if len(self.sessions) > MAX_SESSIONS:
                self.sessions.pop(next(iter(self.sessions)))
        return cached

    @staticmethod
    def _messages(raw: object) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw:
            raise _invalid("messages must be a non-empty array")
        pending_call: str | None = None
        for index, message in enumerate(raw):
            if not isinstance(message, dict):
                raise HTTPError(400, "Your request contains invalid JSON syntax.")
            role = message.get("role")
            if role not in ROLES:
                raise _invalid(f"messages[{index}].role is unknown: {role!r}")
            if role == "system" and index != 0:
                raise _invalid("system message must be the first message")
            content = message.get("content", "")
            if not isinstance(content, str):
                raise _invalid(f"messages[{index}].content must be a string")
            call = message.get("function_call")
            if call is not None:
                if role != "assistant" or not isinstance(call, dict):
                    raise _invalid(f"messages[{index}].function_call is only for assistant")
                if not isinstance(call.get("name"), str) or not isinstance(
                    call.get("arguments", {}), dict
                ):
                    raise _invalid(f"messages[{index}].function_call.arguments must be an object")
                pending_call = call["name"]
            if role == "function":
                if pending_call is None:
                    raise _invalid(
                        "every assistant function result must have an assistant "
                        "function call in history"
                    )
                try:
                    parsed = orjson.loads(content)
                except orjson.JSONDecodeError:
                    parsed = None
                if not isinstance(parsed, dict):
                    raise _invalid(
                        f"messages[{index}].content of a function message must be a JSON object"
                    )
                pending_call = None
        return raw

    @staticmethod
    def _functions(raw: object, *, strict: bool) -> list[dict[str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _invalid("functions must be an array")
        bad = []
        for spec in raw:
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise _invalid("every function needs a name")
            if not _FUNCTION_NAME_RE.match(spec["name"]):
                bad.append(spec["name"])
            params = spec.get("parameters")
            if params is not None and not isinstance(params, dict):
                raise _invalid(f"parameters of {spec['name']} must be an object")
            if strict and params:
                problem = _unsupported_schema_part(params)
                if problem:
                    raise _invalid(f"functions[{spec['name']}].parameters: {problem}")
        if bad:
            raise HTTPError(422, f"Invalid function names: {', '.join(bad)}")
        return raw

    @staticmethod
    def _check_function_call(value: object, functions: list[dict[str, Any]]) -> None:
        if value is None or value in ("auto", "none"):
            return
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            if not any(f["name"] == value["name"] for f in functions):
                raise _invalid(f"function {value['name']} is not in functions")
            return
        raise _invalid("function_call must be 'auto', 'none' or {\"name\": ...}")

    @staticmethod
    def _check_sampling(body: dict[str, Any]) -> None:
        def number(name: str) -> float | None:
            value = body.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _invalid(f"{name} must be a number")
            return float(value)

        temperature = number("temperature")
        if temperature is not None and temperature <= 0:
            raise _invalid("temperature must be in range (0, +inf)")
        top_p = number("top_p")
        if top_p is not None and not 0 <= top_p <= 1:
            raise _invalid("top_p must be in range [0, 1]")
        penalty = number("repetition_penalty")
        if penalty is not None and penalty <= 0:
            raise _invalid("repetition_penalty must be in range (0, +inf)")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise _invalid("max_tokens must be a positive integer")

    def _reply(
        self,
        body: dict[str, Any],
        messages: list[dict[str, Any]],
        functions: list[dict[str, Any]],
        function_call: object,
    ) -> _Reply:
        forced = self.config.finish_reason
        last = messages[-1]
        last_user = next(
            (m.get("content", "") for m in reversed(messages) if m["role"] == "user"), ""
        )
        place_match = PLACE_RE.search(last_user)
        place = place_match.group(1) if place_match else "Moscow"

        if forced == "blacklist":
            return _Reply(BLACKLIST_REPLY, None, "blacklist", count_tokens(BLACKLIST_REPLY))
        wants_call = (
            bool(functions)
            and function_call != "none"
            and (
                isinstance(function_call, dict)
                or forced == "function_call"
                or (last["role"] == "user" and WEATHER_RE.search(last.get("content", "")))
            )
        )
        if wants_call:
            if isinstance(function_call, dict):
                spec = next(f for f in functions if f["name"] == function_call["name"])
            else:
                spec = next((f for f in functions if "weather" in f["name"].lower()), functions[0])
            arguments = fake_value("", {"type": "object", **(spec.get("parameters") or {})}, place)
            call_tokens = count_tokens(spec["name"]) + count_tokens(
                orjson.dumps(arguments).decode()
            )
            return _Reply(
                "",
                {"name": spec["name"], "arguments": arguments},
                "error" if forced == "error" else "function_call",
                call_tokens,
            )

        response_format = body.get("response_format")
        system = messages[0].get("content", "") if messages[0]["role"] == "system" else ""
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            document = fake_value("", response_format.get("schema") or {}, place)
            text = orjson.dumps(document).decode()
        elif JSON_ASKED_RE.search(system):
            # Asked for bare JSON in words: answers in JSON, but fenced, as
            # chat models like to.
            document = {"answer": "Echo: " + echo_words(last_user)}
            text = "```json\n" + orjson.dumps(document).decode() + "\n```"
        elif last["role"] == "function":
            text = REPLY_PREFIX + "Function result: " + echo_words(last.get("content", ""))
        else:
            text = REPLY_PREFIX + "Echo: " + echo_words(last_user)
        words = text.split()
        finish = "error" if forced == "error" else "stop"
        limit = body.get("max_tokens")
        if forced == "length":
            limit = max(1, len(words) // 2)
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
            text = " ".join(words)
        return _Reply(text, None, finish, len(words))

    @staticmethod
    def _prompt_tokens(messages: list[dict[str, Any]], functions: list[dict[str, Any]]) -> int:
        total = 5 * len(functions)
        for message in messages:
            total += 1 + count_tokens(message.get("content") or "")
            call = message.get("function_call")
            if isinstance(call, dict):
                total += count_tokens(str(call.get("name", "")))
                total += count_tokens(orjson.dumps(call.get("arguments") or {}).decode())
        return total

    def _stream(
        self,
        served: str,
        created: int,
        reply: _Reply,
        usage: dict[str, Any],
        headers: list[tuple[str, str]],
    ) -> StreamResponse:
        base = {"created": created, "model": served, "object": "chat.completion"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice: dict[str, Any] = {"delta": delta, "index": 0}
            if finish is not None:
                choice["finish_reason"] = finish
            out: dict[str, Any] = {"choices": [choice], **base}
            if finish is not None:
                out["usage"] = usage
            return out

        if reply.function_call is not None:
            # A function call arrives whole, in the chunk that finishes the turn.
            delta = {
                "role": "assistant",
                "content": "",
                "function_call": reply.function_call,
                "functions_state_id": str(uuid.uuid4()),
            }
            payloads = [chunk(delta, reply.finish_reason)]
        else:
            pieces = _split_text(reply.content, self.config.stream_tokens) or [""]
            payloads = []
            if reply.reasoning is not None:
                # Reasoning streams first, in its own deltas (gpt2giga reads
                # delta.reasoning_content).
                thoughts = _split_text(reply.reasoning, 2)
                payloads.append(
                    chunk({"role": "assistant", "content": "", "reasoning_content": thoughts[0]})
                )
                payloads += [chunk({"reasoning_content": t}) for t in thoughts[1:]]
            payloads.append(chunk({"content": pieces[0], "role": "assistant"}))
            payloads += [chunk({"content": piece}) for piece in pieces[1:]]
            payloads.append(chunk({"content": ""}, reply.finish_reason))
        return sse_response(payloads, headers=headers)

    # ---- models, embeddings, tokens, balance --------------------------------

    @staticmethod
    def _model_object(model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "owned_by": "salutedevices",
            "type": MODELS[model_id],
        }

    def list_models(self, request: Request) -> Response:
        """Handle ``GET /api/v1/models``."""
        self._authenticate(request)
        return json_response(
            {"object": "list", "data": [self._model_object(m) for m in MODELS]},
            headers=self._x_headers(request),
        )

    def retrieve_model(self, request: Request, model_id: str) -> Response:
        """Handle ``GET /api/v1/models/{id}``."""
        self._authenticate(request)
        if model_id not in MODELS:
            raise HTTPError(404, "No such model")
        return json_response(self._model_object(model_id), headers=self._x_headers(request))

    def embeddings(self, request: Request) -> Response:
        """Handle ``POST /api/v1/embeddings`` (per-item usage, 1024-d by default)."""
        body = self._body(request)
        model = self._known_model(body, ("embedder",))
        inputs = body.get("input")
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(text, str) for text in inputs)
        ):
            raise _invalid("input must be a non-empty array of strings")
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_vector(f"{model}\0{text}", self.config.embedding_dim),
                "usage": {"prompt_tokens": max(1, count_tokens(text))},
            }
            for index, text in enumerate(inputs)
        ]
        return json_response(
            {"object": "list", "model": model, "data": data}, headers=self._x_headers(request)
        )

    def tokens_count(self, request: Request) -> Response:
        """Handle ``POST /api/v1/tokens/count``: a bare array, one entry per input."""
        body = self._body(request)
        self._known_model(body, ("chat", "embedder"))
        inputs = body.get("input")
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            raise _invalid("input must be an array of strings")
        return json_response(
            [
                {"object": "tokens", "tokens": GIGACHAT.count(text), "characters": len(text)}
                for text in inputs
            ],
            headers=self._x_headers(request),
        )

    def balance(self, request: Request) -> Response:
        """Handle ``GET /api/v1/balance`` (403 unless the account is prepaid)."""
        self._authenticate(request)
        if self.config.balance_forbidden:
            raise HTTPError(403, "Permission denied")
        return json_response(
            {
                "balance": [
                    {"usage": "GigaChat", "value": 900000},
                    {"usage": "GigaChat-Pro", "value": 991490},
                    {"usage": "embeddings", "value": 9999967},
                ]
            },
            headers=self._x_headers(request),
        )


EMULATOR = GigaChatEmulator
