"""``POST /v1/completions``: OpenAI's legacy text completions.

The prompt becomes one user message; the reply's text is the completion.
Only what the chat providers can honour is accepted: one prompt (a string,
or an array holding one string), ``n`` = 1, no ``echo``, ``logprobs``,
``suffix`` or ``best_of`` above 1; each refusal names its parameter.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from providers.base import ChatChunk, ChatRequest, ChatStream, Message, Usage
from providers.errors import ProviderError
from routing import preferences
from routing.gateway import pipeline, relay, validation
from routing.gateway.auth import authenticate
from routing.gateway.context import CallContext
from routing.gateway.validation import (
    _boolean,
    _integer,
    _missing,
    _number,
    _stop,
    _string,
    _type_error,
    _value_error,
)
from xrouter_site.errors import ErrorCode, InvalidRequest


def _prompt(body: dict[str, Any]) -> str:
    raw = body.get("prompt")
    if raw is None:
        raise _missing("prompt")
    if isinstance(raw, list):
        if len(raw) != 1 or not isinstance(raw[0], str):
            if raw and all(isinstance(item, int) for item in raw):
                raise _value_error("prompt", "token arrays are not supported; send text.")
            raise _value_error("prompt", "send one prompt (a string or an array of one string).")
        raw = raw[0]
    if not isinstance(raw, str):
        raise _type_error("prompt", "a string", raw)
    if not raw:
        raise _value_error("prompt", "must not be empty.")
    return raw


def completion_input(body: Any) -> validation.ChatInput:
    """Validate a ``/v1/completions`` body into the chat pipeline's input."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code=ErrorCode.INVALID_JSON)
    model = validation.model_id(body)
    prompt = _prompt(body)
    if _boolean(body, "echo", False):
        raise _value_error("echo", "echoing the prompt is not supported.")
    if body.get("logprobs") is not None:
        raise _value_error("logprobs", "log probabilities are not supported by these providers.")
    if _string(body, "suffix"):
        raise _value_error("suffix", "insertion (suffix) is not supported.")
    if (_integer(body, "best_of", 1) or 1) > 1:
        raise _value_error("best_of", "must be 1.")
    stream = bool(_boolean(body, "stream", False))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _type_error("stream_options", "an object", options)
        if not stream:
            raise _value_error("stream_options", "is only allowed when 'stream' is true.")
        include_usage = bool(_boolean(options, "include_usage", False))
    request = ChatRequest(
        model=model,
        messages=[Message(role="user", content=prompt)],
        stream=stream,
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=_integer(body, "max_tokens", 1, settings.XROUTER_MAX_TOKENS_CAP),
        stop=_stop(body),
        presence_penalty=_number(body, "presence_penalty", -2, 2),
        frequency_penalty=_number(body, "frequency_penalty", -2, 2),
        seed=_integer(body, "seed", -(2**63)),
        n=_integer(body, "n", 1, 1) or 1,
        user=_string(body, "user"),
    )
    return validation.ChatInput(
        model=model,
        request=request,
        include_usage=include_usage,
        fallback_models=validation.fallback_models(body),
        preferences=preferences.parse(body.get("provider")),
    )


def _finish(value: Any) -> str | None:
    return str(value) if value else None


class CompletionEncoder:
    """``text_completion`` chunks, then usage (if asked) and ``[DONE]``."""

    def __init__(self, stream: ChatStream, ctx: CallContext, include_usage: bool) -> None:
        self.base = {
            "id": ctx.generation_id,
            "object": "text_completion",
            "created": stream.created,
            "model": ctx.model,
        }
        self.include_usage = include_usage

    def start(self) -> bytes:
        return b""

    def chunk(self, chunk: ChatChunk) -> bytes:
        text = (chunk.content or "") + (chunk.refusal or "")
        if not text and chunk.finish_reason is None:
            return b""  # a role-only chunk has nothing to say here
        choice = {
            "index": chunk.index,
            "text": text,
            "logprobs": None,
            "finish_reason": _finish(chunk.finish_reason),
        }
        return relay.sse_data({**self.base, "choices": [choice]})

    def end(self, usage: Usage) -> bytes:
        if not self.include_usage:
            return relay.SSE_DONE
        return relay.sse_data({**self.base, "choices": [], "usage": _usage(usage)}) + relay.SSE_DONE

    def error(self, exc: ProviderError) -> bytes:
        return relay.openai_stream_error(exc)


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completions(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    ctx.endpoint = "completions"
    principal = authenticate(request, ctx)
    data = completion_input(pipeline.read_json(request, ctx))
    pipeline.note_session(request, data)
    if data.request.stream:
        stream, first = pipeline.start_stream(request, ctx, principal, data)
        return pipeline.stream_response(
            ctx, stream, first, CompletionEncoder(stream, ctx, data.include_usage)
        )
    result = pipeline.complete_chat(request, ctx, principal, data)
    return pipeline.served_json(
        ctx,
        {
            "id": ctx.generation_id,
            "object": "text_completion",
            "created": result.created,
            "model": ctx.model,
            "choices": [
                {
                    "index": choice.index,
                    "text": choice.message.text(),
                    "logprobs": None,
                    "finish_reason": _finish(choice.finish_reason),
                }
                for choice in result.choices
            ],
            "usage": _usage(result.usage),
        },
    )
