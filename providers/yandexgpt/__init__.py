"""YandexGPT (Yandex AI Studio): the adapter and its IAM authentication.

The registry names ``providers.yandexgpt.YandexGPTProvider``; the adapter
lives in :mod:`providers.yandexgpt.adapter`, service-account tokens in
:mod:`providers.yandexgpt.auth`.
"""

from __future__ import annotations

from providers.yandexgpt.adapter import YandexGPTProvider, iter_json_lines, tool_call_id

__all__ = ["YandexGPTProvider", "iter_json_lines", "tool_call_id"]
