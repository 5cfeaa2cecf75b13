"""The Anthropic adapter against the Messages API's real shapes (fake transport)."""

from __future__ import annotations

import pytest

from tests.unit.test_providers_fakes import KEYS, ScriptedTransport, json_response, make_http, timeout_step
from tollgate.providers.anthropic import API_VERSION, DEFAULT_MAX_TOKENS, AnthropicProvider
from tollgate.providers.base import ChatMessage, ChatRequest, Usage
from tollgate.providers.errors import UnsupportedOperation, UpstreamError, UpstreamTimeout

MESSAGE_OK = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": ", world."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": 6,
        "service_tier": "standard",
    },
}
INVALID = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "max_tokens: 100000 > 8192, which is the maximum allowed number of output tokens for "
        "claude-3-5-haiku-20241022",
    },
}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
RATE_LIMITED = {
    "type": "error",
    "error": {
        "type": "rate_limit_error",
        "message": "Number of request tokens has exceeded your per-minute rate limit",
    },
}

CHAT = ChatRequest(
    model="claude-3-5-haiku-20241022",
    messages=(
        ChatMessage("system", "You are terse."),
        ChatMessage("system", "Answer in English."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("user", "Say hello to the world"),
    ),
    max_tokens=100,
    temperature=1.4,
    stop=("###",),
    user="org_1:alice",
)


def _provider(transport: ScriptedTransport, sleeps: list[float]) -> AnthropicProvider:
    return AnthropicProvider(make_http(transport, sleeps), KEYS)


def test_messages_request_separates_the_system_prompt() -> None:
    # Given
    transport = ScriptedTransport(json_response(200, MESSAGE_OK))
    # When
    result = _provider(transport, []).chat(CHAT)
    # Then
    sent = transport.requests[0]
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == API_VERSION == "2023-06-01"
    assert "Authorization" not in sent.headers
    assert transport.body() == {
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 100,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Say hello to the world"},
        ],
        "temperature": 1.0,  # Anthropic's maximum
        "stop_sequences": ["###"],
        "metadata": {"user_id": "org_1:alice"},
    }
    # And the text blocks are joined; cached input counts as input
    assert result.text == "Hello, world."
    assert result.finish_reason == "stop"
    assert result.usage == Usage(16, 6)
    assert (result.model, result.response_id) == ("claude-3-5-haiku-20241022", "msg_01XFDUDYJgAACzvnptvVoYEL")


def test_max_tokens_is_always_sent() -> None:
    transport = ScriptedTransport(json_response(200, MESSAGE_OK | {"stop_reason": "max_tokens"}))
    result = _provider(transport, []).chat(
        ChatRequest(model="claude-3-5-haiku-20241022", messages=(ChatMessage("user", "x"),))
    )
    assert transport.body()["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "system" not in transport.body()
    assert result.finish_reason == "length"


def test_an_error_body_becomes_a_provider_error_and_a_400_is_not_retried() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(json_response(400, INVALID))
    with pytest.raises(UpstreamError) as caught:
        _provider(transport, sleeps).chat(CHAT)
    assert transport.calls == 1
    assert sleeps == []
    assert caught.value.status == 502
    assert "max_tokens: 100000 > 8192" in caught.value.detail
    assert caught.value.upstream_code == "invalid_request_error"


def test_a_429_with_retry_after_then_529_overloaded_are_retried() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(
        json_response(429, RATE_LIMITED, {"retry-after": "4"}),
        json_response(529, OVERLOADED),
        json_response(200, MESSAGE_OK),
    )
    assert _provider(transport, sleeps).chat(CHAT).text == "Hello, world."
    assert sleeps == [4.0, 0.75]


def test_overloaded_to_the_end_is_retryable_for_the_fallback_chain() -> None:
    transport = ScriptedTransport(*[json_response(529, OVERLOADED)] * 3)
    with pytest.raises(UpstreamError) as caught:
        _provider(transport, []).chat(CHAT)
    assert caught.value.upstream_code == "overloaded_error"
    assert caught.value.retryable
    assert caught.value.fallback_ok


def test_a_timeout_is_a_provider_timeout() -> None:
    transport = ScriptedTransport(timeout_step, timeout_step, timeout_step)
    with pytest.raises(UpstreamTimeout):
        _provider(transport, []).chat(CHAT)


def test_anthropic_serves_no_embeddings() -> None:
    from tollgate.providers.base import EmbeddingRequest

    with pytest.raises(UnsupportedOperation):
        _provider(ScriptedTransport(), []).embed(EmbeddingRequest(model="x", inputs=("a",)))
