"""Redaction and restoration, including placeholders split across stream chunks."""

from __future__ import annotations

import orjson
import pytest

from providers.base import (
    ChatChunk,
    ChatRequest,
    ChatStream,
    FinishReason,
    Message,
    ToolCall,
    ToolCallDelta,
)
from routing.pii import PiiDetected, Redaction, guard_chat

PROMPT = (
    "Оформите полис: Иванов Пётр, паспорт 4506 123456, ИНН 500100732259, "
    "телефон +7 (916) 123-45-67, почта petrov@mail.ru, ещё раз телефон +7 (916) 123-45-67."
)
VALUES = ("4506 123456", "500100732259", "+7 (916) 123-45-67", "petrov@mail.ru")


def test_redact_uses_one_typed_placeholder_per_value_and_restores_it() -> None:
    redaction = Redaction()
    redacted = redaction.redact(PROMPT)
    assert not any(value in redacted for value in VALUES)
    assert redacted.count("[PHONE_1]") == 2
    assert "[PASSPORT_1]" in redacted and "[INN_1]" in redacted and "[EMAIL_1]" in redacted
    assert dict(redaction.counts) == {"passport": 1, "inn": 1, "phone": 2, "email": 1}
    assert redaction.restore(redacted) == PROMPT
    # A placeholder this request never issued is left alone.
    assert redaction.restore("[CARD_7] и [PHONE_1]") == "[CARD_7] и +7 (916) 123-45-67"


def test_a_placeholder_already_in_the_clients_text_is_not_reused() -> None:
    redaction = Redaction()
    redacted = redaction.redact("шаблон [PHONE_1], мой номер 89161234567")
    assert redacted == "шаблон [PHONE_1], мой номер [PHONE_2]"
    assert redaction.restore("[PHONE_2]") == "89161234567"


def _stream(pieces: list[str], finish: bool = True) -> ChatStream:
    chunks = [ChatChunk(role="assistant", content="")]
    chunks += [ChatChunk(content=piece) for piece in pieces]
    if finish:
        chunks.append(ChatChunk(finish_reason=FinishReason.STOP))
    return ChatStream(iter(chunks), id="c1", model="m", created=1)


@pytest.mark.parametrize("finish", [True, False])
def test_stream_restores_placeholders_split_at_every_position(finish: bool) -> None:
    request = ChatRequest(model="m", messages=[Message(role="user", content=PROMPT)])
    guard = guard_chat(request, "redact")
    assert guard is not None
    answer = "Ответ: " + str(guard.request.messages[0].content)
    for size in (1, 2, 3, 5, 7, 11):
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
        stream = guard.wrap_stream(_stream(pieces, finish))
        text = "".join(chunk.content or "" for chunk in stream)
        assert text == "Ответ: " + PROMPT, size


def test_stream_restores_tool_call_arguments_and_keeps_stream_attributes() -> None:
    redaction = Redaction()
    arguments = redaction.redact('{"phone": "89161234567"}')
    inner = ChatStream(
        iter(
            [
                ChatChunk(tool_calls=[ToolCallDelta(index=0, id="t", name="call", arguments="")]),
                ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments=arguments[:14])]),
                ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments=arguments[14:])]),
                ChatChunk(finish_reason=FinishReason.TOOL_CALLS),
            ]
        ),
        id="c2",
        model="m",
        created=5,
    )
    from routing.pii.guard import RestoringStream

    stream = RestoringStream(inner, redaction)
    first = next(stream)
    inner.model_version = "v9"  # the adapter learns it from a later chunk
    got = "".join(d.arguments for chunk in [first, *stream] for d in chunk.tool_calls)
    assert orjson.loads(got) == {"phone": "89161234567"}
    assert (stream.id, stream.created, stream.model_version) == ("c2", 5, "v9")
    stream.close()
    assert inner.closed and stream.closed


def test_tool_arguments_stay_valid_json_even_for_numbers() -> None:
    call = ToolCall(
        id="1", name="lookup", arguments='{"inn": 7707083893, "note": "ОГРН 1027700132195"}'
    )
    request = ChatRequest(
        model="m",
        messages=[
            Message(role="user", content="найди компанию"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", content="Телефон 8 800 555-35-35", tool_call_id="1"),
        ],
    )
    guard = guard_chat(request, "redact")
    assert guard is not None
    sent = guard.request.messages
    assert orjson.loads(sent[1].tool_calls[0].arguments) == {
        "inn": "[INN_1]",
        "note": "ОГРН [OGRN_1]",
    }
    assert sent[2].content == "Телефон [PHONE_1]"
    assert guard.counts == {"inn": 1, "ogrn": 1, "phone": 1}
    # The client's request object is not changed.
    assert "7707083893" in request.messages[1].tool_calls[0].arguments


def test_content_parts_are_redacted_and_other_parts_kept() -> None:
    parts = [
        {"type": "text", "text": "карта 4111 1111 1111 1111"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    guard = guard_chat(
        ChatRequest(model="m", messages=[Message(role="user", content=parts)]), "redact"
    )
    assert guard is not None
    assert guard.request.messages[0].content == [
        {"type": "text", "text": "карта [CARD_1]"},
        parts[1],
    ]


def test_block_names_kinds_never_values_and_off_does_nothing() -> None:
    request = ChatRequest(model="m", messages=[Message(role="user", content=PROMPT)])
    with pytest.raises(PiiDetected) as info:
        guard_chat(request, "block")
    assert info.value.counts == {"passport": 1, "inn": 1, "phone": 2, "email": 1}
    assert "email, inn, passport, phone" in info.value.message
    assert not any(value in info.value.message for value in VALUES)
    assert guard_chat(request, "off") is None
    clean = ChatRequest(model="m", messages=[Message(role="user", content="Привет, как дела?")])
    assert guard_chat(clean, "redact") is None
    assert guard_chat(clean, "block") is None
