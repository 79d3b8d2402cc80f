"""OpenAI's response objects, built from the provider dataclasses.

The one place that knows the JSON shapes of ``chat.completion`` choices,
``chat.completion.chunk`` deltas, embedding vectors and ``model`` objects.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from providers.base import ChatChunk, ChatResponse
from routing.table import ModelRoute
from routing.versions import version_fields


def message_dict(response: ChatResponse) -> list[dict[str, Any]]:
    choices = []
    for choice in response.choices:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.message.content,
            "refusal": None,
        }
        if choice.message.reasoning_content:
            message["reasoning_content"] = choice.message.reasoning_content
        if choice.message.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in choice.message.tool_calls
            ]
        choices.append(
            {
                "index": choice.index,
                "message": message,
                "finish_reason": str(choice.finish_reason) if choice.finish_reason else None,
                "logprobs": None,
            }
        )
    return choices


def chunk_dict(chunk: ChatChunk) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if chunk.role:
        delta["role"] = chunk.role
    if chunk.reasoning_content:
        delta["reasoning_content"] = chunk.reasoning_content
    if chunk.content is not None:
        delta["content"] = chunk.content
    if chunk.refusal is not None:
        # A content filter replaced an answer whose start was already sent.
        delta["refusal"] = chunk.refusal
    if chunk.tool_calls:
        delta["tool_calls"] = [
            {
                "index": call.index,
                **({"id": call.id, "type": "function"} if call.id else {}),
                "function": {
                    **({"name": call.name} if call.name else {}),
                    "arguments": call.arguments,
                },
            }
            for call in chunk.tool_calls
        ]
    return {
        "index": chunk.index,
        "delta": delta,
        "finish_reason": str(chunk.finish_reason) if chunk.finish_reason else None,
        "logprobs": None,
    }


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def model_dict(route: ModelRoute) -> dict[str, Any]:
    owned_by = route.model_id.split("/", 1)[0] if "/" in route.model_id else "xrouter"
    out: dict[str, Any] = {
        "id": route.model_id,
        "object": "model",
        "created": route.created,
        "owned_by": owned_by,
        "type": route.type,
    }
    if route.display_name:
        out["name"] = route.display_name
    out.update(version_fields(route))
    if route.context_length:
        out["context_length"] = route.context_length
    if route.deployments:
        # Residency per deployment (routing/residency.py), so a compliance
        # officer can see where each model's requests may go.
        out["deployments"] = [
            {
                "provider": d.provider,
                "data_region": d.data_region or None,
                "stores_prompts": d.stores_prompts,
            }
            for d in route.deployments
        ]
    if route.prompt_price is not None or route.completion_price is not None:
        out["pricing"] = {
            "currency": "RUB",
            "unit": "1K tokens",
            "prompt": str(route.prompt_price) if route.prompt_price is not None else None,
            "completion": str(route.completion_price)
            if route.completion_price is not None
            else None,
        }
    return out
