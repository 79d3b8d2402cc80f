"""The contract every provider adapter implements.

Adapters translate between these dataclasses and one provider's wire format;
provider-specific dicts never travel above this layer. The gateway speaks
OpenAI's dialect to clients, so the dataclasses follow OpenAI's chat and
embeddings objects closely, with typed fields instead of dicts.

To add a provider, subclass :class:`Provider`, set ``kind`` and register the
dotted path in :data:`providers.registry.PROVIDER_KINDS`::

    class AcmeProvider(Provider):
        kind = "acme"

        def chat(self, request: ChatRequest) -> ChatResponse:
            body = {...}  # map request -> Acme's JSON
            response = self.http.post_json(self.url("/chat"), body, headers=...)
            return ChatResponse(...)  # map Acme's JSON -> dataclasses

        def stream(self, request: ChatRequest) -> ChatStream:
            ...

Upstream failures are raised as :class:`providers.errors.ProviderError`, never as an HTTP
library exception; routing decides whether to retry or fall back from its
``retryable`` flag alone.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from providers.http import HttpClient

#: Request parameters a deployment may honour, in OpenRouter's vocabulary
#: (``supported_parameters``). ``response_format`` is JSON mode (json_object),
#: ``structured_outputs`` a ``json_schema`` format, ``reasoning`` a reasoning
#: effort. Routing preferences with ``require_parameters`` pick only
#: deployments that declare every parameter a request uses.
PARAMETERS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "structured_outputs",
        "reasoning",
    }
)


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


@dataclass(slots=True)
class ToolCall:
    """One function call the model asks for; ``arguments`` is a JSON string."""

    id: str
    name: str
    arguments: str
    type: str = "function"


@dataclass(slots=True)
class Message:
    """A chat message in OpenAI's terms.

    ``content`` is a string, or a list of OpenAI content parts (dicts with
    ``type`` "text" / "image_url"); adapters that cannot send parts flatten
    the text parts.
    """

    role: str  # system | developer | user | assistant | tool
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    # The model's reasoning text, where the provider sends it (OpenAI's
    # ``message.reasoning_content`` as DeepSeek and GigaChat spell it).
    reasoning_content: str | None = None

    def text(self) -> str:
        """Return the text of ``content``, joining text parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


@dataclass(slots=True)
class Tool:
    """A function the model may call (OpenAI ``tools[].function``)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    """A chat completion request, already validated and routed.

    ``model`` is the upstream model name (the catalog's ``upstream``), not
    the public id the client sent.
    """

    model: str
    messages: list[Message]
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    n: int = 1
    tools: list[Tool] = field(default_factory=list)
    # "auto" | "none" | "required" | {"type": "function", "function": {"name": ...}}
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI response_format as sent: {"type": "json_object"} or
    # {"type": "json_schema", "json_schema": {...}}.
    response_format: dict[str, Any] | None = None
    user: str | None = None
    # Gateway request id, forwarded upstream where the provider takes one.
    request_id: str | None = None
    # Provider-specific options from the catalog or request (e.g. GigaChat's
    # repetition_penalty); adapters read what they know and ignore the rest.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    """Token counts in OpenAI's terms: ``prompt_tokens`` include ``cached_tokens``.

    ``billed_prompt_tokens`` is set by adapters whose provider does not bill
    cached prompt tokens (GigaChat); ``None`` means every prompt token is
    billed at the prompt price.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    billed_prompt_tokens: int | None = None
    # Part of completion_tokens the model spent reasoning (OpenAI's
    # completion_tokens_details.reasoning_tokens).
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass(slots=True)
class Choice:
    index: int
    message: Message
    finish_reason: FinishReason | None


@dataclass(slots=True)
class ChatResponse:
    """A whole completion. ``model`` is what served it, version included."""

    id: str
    model: str
    choices: list[Choice]
    usage: Usage
    created: int
    # Provider's own version string (GigaChat "2.0.28.2", Yandex
    # modelVersion), reported to clients in x-xrouter-model-version.
    model_version: str | None = None


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call (OpenAI ``delta.tool_calls[]``)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class ChatChunk:
    """One streamed piece: a content delta, a finish reason and/or usage.

    A chunk with only ``usage`` set is the trailing usage report.
    """

    index: int = 0
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    # OpenAI's ``delta.refusal``: the provider's refusal text when a content
    # filter replaced an answer whose start was already streamed.
    refusal: str | None = None
    # A piece of the model's reasoning text (``delta.reasoning_content``).
    reasoning_content: str | None = None
    # The upstream's own bytes of an OpenAI-format content chunk from its
    # ``"choices"`` key on (providers.passthrough), for a relay that may send
    # them as they are; ``content`` holds the same text.
    raw: bytes | None = None


class ChatStream:
    """An iterator of :class:`ChatChunk` that owns an upstream connection.

    ``close()`` must release the connection whether or not the stream was
    read to the end; the gateway calls it when the client goes away. The
    ``id``, ``model`` and ``model_version`` attributes may be filled in by
    the adapter as the first chunks arrive. ``passthrough`` says the
    chunks' ``raw`` bytes may reach the client as they are; only the adapter
    that made them sets it, so a wrapper that edits chunks (a new stream,
    like the PII guard's) never passes stale bytes on.

    An adapter that reads several events per upstream read may hand them
    over in lists (:meth:`set_batches`): iterating still gives one chunk at
    a time, and :meth:`batches` gives the relay each read's chunks at once,
    so it can send them to the client in one write (issue 19).
    """

    def __init__(
        self,
        chunks: Iterator[ChatChunk],
        *,
        id: str,
        model: str,
        created: int,
        close: Any = None,
    ) -> None:
        self._chunks = chunks
        self._batches: Iterator[list[ChatChunk]] | None = None
        # Chunks of a batch that one-at-a-time iteration has not given out.
        self._held: deque[ChatChunk] = deque()
        self._close = close
        self.id = id
        self.model = model
        self.created = created
        self.model_version: str | None = None
        self.passthrough = False
        self.closed = False

    def set_batches(self, batches: Iterator[list[ChatChunk]]) -> None:
        """Take the chunks from ``batches``: one list per upstream read."""
        self._batches = batches

    def __iter__(self) -> Iterator[ChatChunk]:
        return self

    def __next__(self) -> ChatChunk:
        if self._held:
            return self._held.popleft()
        if self._batches is None:
            return next(self._chunks)
        while True:
            batch = next(self._batches)
            if batch:
                self._held.extend(batch[1:])
                return batch[0]

    def batches(self) -> Iterator[list[ChatChunk]]:
        """Yield the remaining chunks in lists, each what one upstream read gave."""
        if self._held:
            held = list(self._held)
            self._held.clear()
            yield held
        if self._batches is None:
            # Through __next__, not self._chunks: a wrapper that edits
            # chunks (the PII guard's RestoringStream) overrides __next__.
            for chunk in self:
                yield [chunk]
        else:
            yield from self._batches

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for source in (self._chunks, self._batches):
            close_gen = getattr(source, "close", None)
            if close_gen is not None:
                close_gen()
        if self._close is not None:
            self._close()


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    dimensions: int | None = None
    user: str | None = None
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class EmbeddingResponse:
    model: str
    vectors: list[list[float]]
    usage: Usage


@dataclass(slots=True)
class ModelInfo:
    id: str
    owned_by: str
    created: int = 0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A provider entry of the catalog, with its credential resolved.

    ``credential`` holds the secret read from the env var the catalog names
    (``api_key_env``); ``options`` holds kind-specific settings (GigaChat's
    scope, Yandex's folder id, a CA bundle path...).
    """

    name: str
    kind: str
    base_url: str
    credential: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    pool_size: int = 256


class Provider:
    """Base class of adapters: one instance per catalog provider per process.

    Instances are shared by all requests of a worker, so they hold no
    per-request state; ``self.http`` is the provider's own connection pool.
    """

    kind: ClassVar[str] = ""
    # What this kind of upstream honours (see PARAMETERS); a deployment in
    # the catalog may declare its own list instead.
    supported_parameters: ClassVar[frozenset[str]] = frozenset()
    #: Keys of ``ChatRequest.extra`` this adapter sends upstream; the gateway
    #: names the others in ``x-xrouter-ignored-params``.
    extra_params: ClassVar[frozenset[str]] = frozenset()

    def accepted_extra(self) -> frozenset[str]:
        """Return the ``ChatRequest.extra`` keys this instance sends upstream."""
        return self.extra_params

    def __init__(self, config: ProviderConfig, http: HttpClient | None = None) -> None:
        self.config = config
        self.name = config.name
        self.http = http or HttpClient(
            provider=config.name,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            pool_size=config.pool_size,
            verify=config.options.get("ca_bundle", True),
        )

    def url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Return a whole completion; raise :class:`ProviderError` on failure."""
        raise NotImplementedError(f"{type(self).__name__} does not implement chat()")

    def stream(self, request: ChatRequest) -> ChatStream:
        """Start a streamed completion.

        Errors before the first chunk raise :class:`ProviderError` from this
        call; errors later raise it from the iterator.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement stream()")

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Return one vector per input, in order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement embed()")

    def list_models(self) -> list[ModelInfo]:
        """Return the models the upstream serves."""
        raise NotImplementedError(f"{type(self).__name__} does not implement list_models()")

    def count_tokens(self, model: str, texts: list[str]) -> list[int]:
        """Return the token count of each text for ``model``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement count_tokens()")

    def count_prompt_tokens(self, model: str, messages: list[Message]) -> int:
        """Return the provider's own token count of a chat prompt for ``model``.

        The gateway asks only when an estimate would decide a refusal
        (routing/limits/admission.py). Adapters whose provider has no
        counter leave this unimplemented.
        """
        raise NotImplementedError(f"{type(self).__name__} does not count prompt tokens")

    def health_check(self) -> None:
        """Probe the upstream cheaply; return None or raise ProviderError.

        The default lists models, which no provider bills.
        """
        self.list_models()

    def close(self) -> None:
        self.http.close()
