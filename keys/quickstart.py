"""Copy-ready client snippets for the home page and a newly created key.

Each snippet is plain text with the gateway's base URL, a model and the key
filled in; templates escape it like any other text. The Python ``openai``
and ``curl`` snippets are run against a live gateway by
``tests/keys/test_quickstart.py``, so what the page shows is what works.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.http import HttpRequest

#: Sent by every snippet; short, so the first try costs next to nothing.
PROMPT = "Hello!"


class CatalogModel(Protocol):
    """What a snippet needs of a catalog entry (``routing.table.ModelRoute``)."""

    @property
    def model_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def deprecated(self) -> bool: ...
    @property
    def deployments(self) -> tuple[object, ...]: ...


@dataclass(frozen=True)
class Snippet:
    """One client's way to call the gateway."""

    slug: str  # stable id for HTML ids and tests: "curl", "python", ...
    label: str  # the tab's name (a product name, not translated)
    language: str  # "shell", "python", "javascript"
    code: str


def base_url(request: HttpRequest) -> str:
    """Return the site's public origin, e.g. ``https://llm.example.com``.

    ``XROUTER_PUBLIC_URL`` wins (a gateway behind a proxy that rewrites the
    host); otherwise the request's own scheme and host, which Django checks
    against ``ALLOWED_HOSTS``.
    """
    configured = settings.XROUTER_PUBLIC_URL
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.get_host()}"


def example_model(models: Iterable[CatalogModel], allowed: Iterable[str] = ()) -> str:
    """Return the chat model a snippet should name.

    The first chat model (by id) that has deployments of its own, is not
    deprecated and that ``allowed`` (a key's allowed models; empty: all)
    lets through; else any chat model; else ``xrouter/auto``.
    """
    allowed = set(allowed)

    def permitted(model_id: str) -> bool:
        return not allowed or model_id in allowed or model_id.partition(":")[0] in allowed

    chat = sorted(
        (m for m in models if m.type == "chat" and permitted(m.model_id)),
        key=lambda m: m.model_id,
    )
    for route in chat:
        if route.deployments and not route.deprecated:
            return route.model_id
    return chat[0].model_id if chat else "xrouter/auto"


def _q(value: str) -> str:
    """Quote ``value`` as a string literal valid in Python and JavaScript."""
    return json.dumps(value, ensure_ascii=False)


def snippets(*, origin: str, key: str, model: str) -> list[Snippet]:
    """Return the snippets for ``origin`` (no trailing slash), ``key`` and ``model``."""
    v1 = f"{origin}/v1"
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": PROMPT}]}, ensure_ascii=False
    )
    curl = (
        f"curl {v1}/chat/completions \\\n"
        f'  -H "Authorization: Bearer {key}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d '{body}'"
    )
    python = (
        "from openai import OpenAI\n"
        "\n"
        f"client = OpenAI(base_url={_q(v1)}, api_key={_q(key)})\n"
        "response = client.chat.completions.create(\n"
        f"    model={_q(model)},\n"
        f'    messages=[{{"role": "user", "content": {_q(PROMPT)}}}],\n'
        ")\n"
        "print(response.choices[0].message.content)"
    )
    javascript = (
        'import OpenAI from "openai";\n'
        "\n"
        f"const client = new OpenAI({{ baseURL: {_q(v1)}, apiKey: {_q(key)} }});\n"
        "const response = await client.chat.completions.create({\n"
        f"  model: {_q(model)},\n"
        f'  messages: [{{ role: "user", content: {_q(PROMPT)} }}],\n'
        "});\n"
        "console.log(response.choices[0].message.content);"
    )
    langchain = (
        "from langchain_openai import ChatOpenAI\n"
        "\n"
        f"llm = ChatOpenAI(model={_q(model)}, base_url={_q(v1)}, api_key={_q(key)})\n"
        f"print(llm.invoke({_q(PROMPT)}).content)"
    )
    # The Anthropic SDK appends /v1/messages to base_url itself.
    anthropic = (
        "import anthropic\n"
        "\n"
        f"client = anthropic.Anthropic(base_url={_q(origin)}, api_key={_q(key)})\n"
        "message = client.messages.create(\n"
        f"    model={_q(model)},\n"
        "    max_tokens=1024,\n"
        f'    messages=[{{"role": "user", "content": {_q(PROMPT)}}}],\n'
        ")\n"
        "print(message.content[0].text)"
    )
    return [
        Snippet("curl", "curl", "shell", curl),
        Snippet("python", "Python (openai)", "python", python),
        Snippet("javascript", "JavaScript (openai)", "javascript", javascript),
        Snippet("langchain", "LangChain", "python", langchain),
        Snippet("anthropic", "Anthropic SDK", "python", anthropic),
    ]
