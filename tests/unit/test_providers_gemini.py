"""The Gemini adapter against the Generative Language API's real shapes (fake transport)."""

from __future__ import annotations

import pytest

from tests.unit.test_providers_fakes import KEYS, ScriptedTransport, json_response, make_http, timeout_step
from tollgate.providers.base import ChatMessage, ChatRequest, EmbeddingRequest, Usage
from tollgate.providers.errors import UpstreamError, UpstreamTimeout
from tollgate.providers.gemini import GeminiProvider

GENERATE_OK = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Bonjour"}, {"text": " le monde"}], "role": "model"},
            "finishReason": "STOP",
            "avgLogprobs": -0.0123,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 9,
        "candidatesTokenCount": 3,
        "thoughtsTokenCount": 2,
        "totalTokenCount": 14,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
    },
    "modelVersion": "gemini-1.5-flash-002",
    "responseId": "mL3OZ8KXBLHEnvgPnYGj-Qk",
}
INVALID_KEY = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ],
    }
}
EXHAUSTED = {
    "error": {
        "code": 429,
        "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
    }
}

CHAT = ChatRequest(
    model="gemini-1.5-flash",
    messages=(
        ChatMessage("system", "Answer in French."),
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Bonjour"),
        ChatMessage("user", "Hello world"),
    ),
    max_tokens=64,
    temperature=0.0,
    top_p=0.9,
    seed=3,
    stop=("END",),
)


def _provider(transport: ScriptedTransport, sleeps: list[float]) -> GeminiProvider:
    return GeminiProvider(make_http(transport, sleeps), KEYS)


def test_generate_content_request_and_answer() -> None:
    transport = ScriptedTransport(json_response(200, GENERATE_OK))
    result = _provider(transport, []).chat(CHAT)
    sent = transport.requests[0]
    assert (
        str(sent.url)
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent"
    )
    assert sent.headers["x-goog-api-key"] == "AIza-test-gemini"
    assert "key" not in sent.url.params
    assert transport.body() == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Bonjour"}]},
            {"role": "user", "parts": [{"text": "Hello world"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Answer in French."}]},
        "generationConfig": {
            "maxOutputTokens": 64,
            "temperature": 0.0,
            "topP": 0.9,
            "seed": 3,
            "stopSequences": ["END"],
        },
    }
    assert result.text == "Bonjour le monde"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(9, 5)  # thinking tokens are output
    assert (result.model, result.response_id) == ("gemini-1.5-flash-002", "mL3OZ8KXBLHEnvgPnYGj-Qk")


def test_a_blocked_prompt_is_an_empty_content_filtered_answer() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    transport = ScriptedTransport(json_response(200, blocked))
    result = _provider(transport, []).chat(CHAT)
    assert (result.text, result.finish_reason, result.raw_finish_reason) == ("", "content_filter", "SAFETY")
    assert result.usage == Usage(7, None)


def test_an_error_body_is_a_provider_error_and_a_400_is_not_retried() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(json_response(400, INVALID_KEY))
    with pytest.raises(UpstreamError) as caught:
        _provider(transport, sleeps).chat(CHAT)
    assert transport.calls == 1
    assert sleeps == []
    assert "API key not valid" in caught.value.detail
    assert caught.value.upstream_code == "INVALID_ARGUMENT"


def test_a_429_is_retried_after_retry_after_or_the_retry_info_delay() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(
        json_response(429, EXHAUSTED, {"retry-after": "3"}),
        json_response(429, EXHAUSTED),  # no header: google.rpc.RetryInfo says 7s
        json_response(200, GENERATE_OK),
    )
    assert _provider(transport, sleeps).chat(CHAT).text == "Bonjour le monde"
    assert sleeps == [3.0, 7.0]


def test_a_timeout_is_a_provider_timeout() -> None:
    transport = ScriptedTransport(timeout_step, timeout_step, timeout_step)
    with pytest.raises(UpstreamTimeout):
        _provider(transport, []).chat(CHAT)


def test_one_input_uses_embed_content() -> None:
    transport = ScriptedTransport(json_response(200, {"embedding": {"values": [0.013, -0.008, 0.02]}}))
    result = _provider(transport, []).embed(
        EmbeddingRequest(model="text-embedding-004", inputs=("hello",), dimensions=3)
    )
    assert str(transport.requests[0].url).endswith("/v1beta/models/text-embedding-004:embedContent")
    assert transport.body() == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": "hello"}]},
        "outputDimensionality": 3,
    }
    assert result.vectors == ((0.013, -0.008, 0.02),)
    assert not result.usage.reported


def test_several_inputs_use_batch_embed_contents() -> None:
    transport = ScriptedTransport(json_response(200, {"embeddings": [{"values": [0.1]}, {"values": [0.2]}]}))
    result = _provider(transport, []).embed(EmbeddingRequest(model="text-embedding-004", inputs=("a", "b")))
    assert str(transport.requests[0].url).endswith("/v1beta/models/text-embedding-004:batchEmbedContents")
    assert transport.body() == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    assert result.vectors == ((0.1,), (0.2,))
