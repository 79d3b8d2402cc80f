"""Adapter for any upstream that speaks OpenAI's HTTP API.

vLLM, Ollama, LM Studio, Yandex's OpenAI-compatible surface and OpenAI
itself all take this dialect. Authentication is ``Authorization: Bearer``
with the catalog credential; ``options.headers`` adds fixed extra headers
(for example Yandex's ``OpenAI-Project`` folder id).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from providers.base import (
    PARAMETERS,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChatStream,
    Choice,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    Message,
    ModelInfo,
    Provider,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from providers.errors import ProviderError, bad_response, error_from_status, retry_after_seconds
from providers.http import iter_sse_batches, loads_event, parse_json, stream_ended_early
from providers.passthrough import ChunkScanner
from xrouter_site.errors import ErrorCode

_FINISH_REASONS = {reason.value: reason for reason in FinishReason}
# Legacy "function_call" finish reason maps onto tool calls.
_FINISH_REASONS["function_call"] = FinishReason.TOOL_CALLS


def message_to_openai(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type,
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def usage_from_openai(data: dict[str, Any] | None) -> Usage:
    if not data:
        return Usage()
    details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def _finish_reason(value: Any) -> FinishReason | None:
    return _FINISH_REASONS.get(value) if value else None


class OpenAICompatibleProvider(Provider):
    kind = "openai"
    # Every parameter is forwarded as sent (reasoning_effort too, below).
    supported_parameters = PARAMETERS
    #: OpenAI's own field; models without reasoning ignore it upstream.
    extra_params = frozenset({"reasoning_effort"})

    def _headers(self, request_id: str | None = None) -> dict[str, str]:
        headers = dict(self.config.options.get("headers") or {})
        if self.config.credential:
            headers["Authorization"] = f"Bearer {self.config.credential}"
        if request_id:
            headers["X-Request-ID"] = request_id
        return headers

    def _chat_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [message_to_openai(m) for m in request.messages],
        }
        optional = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
            "stop": request.stop,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "seed": request.seed,
            "tool_choice": request.tool_choice,
            "parallel_tool_calls": request.parallel_tool_calls,
            "response_format": request.response_format,
            "user": request.user,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if isinstance(request.extra.get("reasoning_effort"), str):
            body["reasoning_effort"] = request.extra["reasoning_effort"]
        if request.n != 1:
            body["n"] = request.n
        if request.tools:
            tools = []
            for tool in request.tools:
                function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
                if tool.description is not None:
                    function["description"] = tool.description
                if tool.strict is not None:
                    function["strict"] = tool.strict
                tools.append({"type": "function", "function": function})
            body["tools"] = tools
        if request.stream:
            body["stream"] = True
            # Always ask for usage: billing needs it even when the client
            # did not ask to see it.
            body["stream_options"] = {"include_usage": True}
        return body

    def _raise_for_status(self, response: Any) -> None:
        if response.status_code < 400:
            return
        message: Any = None
        param = None
        try:
            error = orjson.loads(response.content).get("error")
            if isinstance(error, dict):
                message = error.get("message")
                param = error.get("param")
            elif isinstance(error, str):
                message = error
        except (orjson.JSONDecodeError, AttributeError, ValueError):
            message = None
        raise error_from_status(
            self.name,
            response.status_code,
            message or "",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            param=param if isinstance(param, str) else None,
        )

    def chat(self, request: ChatRequest) -> ChatResponse:
        response = self.http.post_json(
            self.url("/chat/completions"),
            self._chat_body(request),
            headers=self._headers(request.request_id),
        )
        self._raise_for_status(response)
        data = parse_json(response, provider=self.name)
        try:
            choices = []
            for raw_choice in data["choices"]:
                raw_message = raw_choice.get("message") or {}
                tool_calls = [
                    ToolCall(
                        id=call["id"],
                        name=call["function"]["name"],
                        arguments=call["function"].get("arguments") or "{}",
                    )
                    for call in raw_message.get("tool_calls") or []
                ]
                choices.append(
                    Choice(
                        index=int(raw_choice.get("index", 0)),
                        message=Message(
                            role=raw_message.get("role") or "assistant",
                            content=raw_message.get("content"),
                            tool_calls=tool_calls,
                            reasoning_content=_text_or_none(raw_message.get("reasoning_content")),
                        ),
                        finish_reason=_finish_reason(raw_choice.get("finish_reason")),
                    )
                )
            return ChatResponse(
                id=str(data.get("id") or ""),
                model=str(data.get("model") or request.model),
                choices=choices,
                usage=usage_from_openai(data.get("usage")),
                created=int(data.get("created") or time.time()),
                model_version=data.get("system_fingerprint"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_response(
                self.name,
                f"{self.name} sent a chat completion in an unexpected shape",
            ) from exc

    def stream(self, request: ChatRequest) -> ChatStream:
        response = self.http.post_json(
            self.url("/chat/completions"),
            self._chat_body(request),
            headers=self._headers(request.request_id),
            stream=True,
        )
        try:
            self._raise_for_status(response)
        finally:
            if response.status_code >= 400:
                response.close()
        stream = ChatStream(
            iter(()),
            id="",
            model=request.model,
            created=int(time.time()),
            close=response.close,
        )
        stream.set_batches(self._parse_batches(response, stream))
        # Content chunks shaped like a checked one go out as upstream's bytes.
        stream.passthrough = True
        return stream

    def _parse_batches(self, response: Any, stream: ChatStream) -> Iterator[list[ChatChunk]]:
        """Yield the chunks of an OpenAI stream, one list per upstream read, until ``[DONE]``.

        A body that ends without ``[DONE]`` was cut off: a retryable
        ProviderError, as a broken connection is. An event that fails
        comes after the chunks of the same read before it.
        """
        scanner = ChunkScanner()
        for payloads in iter_sse_batches(response, provider=self.name):
            batch: list[ChatChunk] = []
            done = False
            try:
                for payload in payloads:
                    if payload == b"[DONE]":
                        done = True
                        break
                    fast = scanner.chunk(payload)
                    if fast is not None:
                        batch.append(fast)
                        continue
                    data = loads_event(payload, provider=self.name)
                    if not isinstance(data, dict):
                        continue
                    batch.extend(self._chunks_of(data, stream))
                    scanner.learn(payload, data)
            except Exception:
                if batch:
                    yield batch
                raise
            if batch:
                yield batch
            if done:
                return
        raise stream_ended_early(self.name)

    def _chunks_of(self, data: dict[str, Any], stream: ChatStream) -> Iterator[ChatChunk]:
        if "error" in data:
            error = data["error"] if isinstance(data["error"], dict) else {}
            raise ProviderError(
                f"{self.name} ended the stream with an error: "
                f"{error.get('message') or 'unknown error'}",
                provider=self.name,
                retryable=False,
                status=502,
                code=ErrorCode.UPSTREAM_ERROR,
            )
        if not stream.id and data.get("id"):
            stream.id = str(data["id"])
            stream.model = str(data.get("model") or stream.model)
            stream.model_version = data.get("system_fingerprint")
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            tool_deltas = [
                ToolCallDelta(
                    index=int(call.get("index", 0)),
                    id=call.get("id"),
                    name=(call.get("function") or {}).get("name"),
                    arguments=(call.get("function") or {}).get("arguments") or "",
                )
                for call in delta.get("tool_calls") or []
            ]
            yield ChatChunk(
                index=int(choice.get("index", 0)),
                role=delta.get("role"),
                content=delta.get("content"),
                tool_calls=tool_deltas,
                finish_reason=_finish_reason(choice.get("finish_reason")),
                reasoning_content=_text_or_none(delta.get("reasoning_content")),
            )
        if data.get("usage"):
            yield ChatChunk(usage=usage_from_openai(data["usage"]))

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        body: dict[str, Any] = {"model": request.model, "input": request.inputs}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user:
            body["user"] = request.user
        response = self.http.post_json(
            self.url("/embeddings"), body, headers=self._headers(request.request_id)
        )
        self._raise_for_status(response)
        data = parse_json(response, provider=self.name)
        try:
            items = sorted(data["data"], key=lambda item: int(item.get("index", 0)))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_response(
                self.name,
                f"{self.name} sent embeddings in an unexpected shape",
            ) from exc
        return EmbeddingResponse(
            model=str(data.get("model") or request.model),
            vectors=vectors,
            usage=usage_from_openai(data.get("usage")),
        )

    def list_models(self) -> list[ModelInfo]:
        response = self.http.get(self.url("/models"), headers=self._headers())
        self._raise_for_status(response)
        data = parse_json(response, provider=self.name)
        try:
            return [
                ModelInfo(
                    id=str(item["id"]),
                    owned_by=str(item.get("owned_by") or self.name),
                    created=int(item.get("created") or 0),
                )
                for item in data["data"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_response(
                self.name,
                f"{self.name} sent a model list in an unexpected shape",
            ) from exc


def _text_or_none(value: object) -> str | None:
    """Return ``value`` when it is a non-empty string (reasoning text), else None."""
    return value if isinstance(value, str) and value else None
