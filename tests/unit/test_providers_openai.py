"""The OpenAI adapter against OpenAI's real request and response shapes (fake transport)."""

from __future__ import annotations

import base64

import pytest

from tests.unit.test_providers_fakes import KEYS, ScriptedTransport, json_response, make_http, timeout_step
from tollgate.providers.base import ChatMessage, ChatRequest, EmbeddingRequest, ImageRequest, Usage
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError, UpstreamTimeout
from tollgate.providers.keys import StaticProviderKeys
from tollgate.providers.mock import mock_png
from tollgate.providers.openai import OpenAIProvider

CHAT_OK = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello! How can I assist you today?",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_06737a9306",
}
CONTEXT_TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "130012 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
RATE_LIMITED = {
    "error": {
        "message": "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): "
        "Limit 500, Used 500, Requested 1. Please try again in 120ms.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
SERVER_ERROR = {
    "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}

CHAT = ChatRequest(
    model="gpt-4o-mini",
    messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Hello!")),
    max_tokens=50,
    temperature=0.2,
    seed=7,
    stop=("\n\n",),
    user="org_1:alice",
    metadata={"mock": {"fail": "error"}},
)


def _provider(transport: ScriptedTransport, sleeps: list[float]) -> OpenAIProvider:
    return OpenAIProvider(make_http(transport, sleeps), KEYS, "https://api.openai.com")


def test_chat_sends_the_exact_request_and_parses_the_answer() -> None:
    # Given
    transport = ScriptedTransport(json_response(200, CHAT_OK))
    # When
    result = _provider(transport, []).chat(CHAT)
    # Then the request is OpenAI's, with Bearer auth, and metadata never leaves Tollgate
    sent = transport.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test-openai"
    assert sent.headers["Content-Type"] == "application/json"
    assert transport.body() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}],
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "seed": 7,
        "stop": ["\n\n"],
        "user": "org_1:alice",
    }
    # And the answer is parsed with its usage
    assert result.text == "Hello! How can I assist you today?"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(19, 10)
    assert (result.provider, result.model, result.response_id) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    )


def test_a_minimal_chat_sends_no_optional_fields() -> None:
    transport = ScriptedTransport(json_response(200, CHAT_OK))
    _provider(transport, []).chat(ChatRequest(model="gpt-4o", messages=(ChatMessage("user", "hi"),)))
    assert transport.body() == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_an_error_body_becomes_a_provider_error_with_openais_message_and_no_retry() -> None:
    # Given a 400 (not retryable)
    sleeps: list[float] = []
    transport = ScriptedTransport(json_response(400, CONTEXT_TOO_LONG))
    # When / Then
    with pytest.raises(UpstreamError) as caught:
        _provider(transport, sleeps).chat(CHAT)
    error = caught.value
    assert transport.calls == 1
    assert sleeps == []
    assert (error.status, error.code) == (502, "provider_error")
    assert "maximum context length is 128000 tokens" in error.detail
    assert (error.provider, error.upstream_status, error.upstream_code) == (
        "openai",
        400,
        "context_length_exceeded",
    )
    assert not error.retryable
    assert not error.fallback_ok


def test_a_429_with_retry_after_is_retried_then_succeeds() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(
        json_response(429, RATE_LIMITED, {"retry-after": "2"}),
        json_response(500, SERVER_ERROR),
        json_response(200, CHAT_OK),
    )
    result = _provider(transport, sleeps).chat(CHAT)
    assert result.text.startswith("Hello!")
    assert transport.calls == 3
    # Retry-After: 2 is honoured; the 500 without one gets the backoff of attempt 2.
    assert sleeps == [2.0, 0.75]


def test_a_timeout_is_a_provider_timeout() -> None:
    transport = ScriptedTransport(timeout_step, timeout_step, timeout_step)
    with pytest.raises(UpstreamTimeout) as caught:
        _provider(transport, []).chat(CHAT)
    assert caught.value.status == 504
    assert transport.calls == 3


def test_without_a_key_it_is_not_configured_and_sends_nothing() -> None:
    transport = ScriptedTransport()
    provider = OpenAIProvider(make_http(transport, []), StaticProviderKeys({}))
    assert not provider.is_configured()
    with pytest.raises(ProviderNotConfigured) as caught:
        provider.chat(CHAT)
    assert caught.value.status == 503
    assert transport.calls == 0


def test_embeddings_request_and_answer_in_input_order() -> None:
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    transport = ScriptedTransport(json_response(200, answer))
    result = _provider(transport, []).embed(
        EmbeddingRequest(model="text-embedding-3-small", inputs=("first", "second"), dimensions=2)
    )
    assert str(transport.requests[0].url) == "https://api.openai.com/v1/embeddings"
    assert transport.body() == {
        "model": "text-embedding-3-small",
        "input": ["first", "second"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    assert result.vectors == ((0.1, 0.2), (0.3, 0.4))
    assert result.usage == Usage(8, 0)


def test_images_ask_for_b64_json_and_read_the_size_from_the_image() -> None:
    png = mock_png("a lighthouse", 64, 32)
    answer = {
        "created": 1713833628,
        "data": [{"b64_json": base64.b64encode(png).decode(), "revised_prompt": "A tall lighthouse at dusk"}],
    }
    transport = ScriptedTransport(json_response(200, answer))
    result = _provider(transport, []).generate_images(
        ImageRequest(
            model="dall-e-3", prompt="a lighthouse", width=1024, height=1024, quality="hd", style="vivid"
        )
    )
    assert str(transport.requests[0].url) == "https://api.openai.com/v1/images/generations"
    assert transport.body() == {
        "model": "dall-e-3",
        "prompt": "a lighthouse",
        "n": 1,
        "size": "1024x1024",
        "response_format": "b64_json",
        "quality": "hd",
        "style": "vivid",
    }
    (image,) = result.images
    assert image.data == png
    assert (image.format, image.width, image.height) == ("png", 64, 32)
    assert image.revised_prompt == "A tall lighthouse at dusk"
    assert not result.usage.reported


def test_gpt_image_models_report_usage_and_take_no_response_format() -> None:
    answer = {
        "created": 1713833628,
        "data": [{"b64_json": base64.b64encode(mock_png("x", 8, 8)).decode()}],
        "usage": {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210},
    }
    transport = ScriptedTransport(json_response(200, answer))
    result = _provider(transport, []).generate_images(ImageRequest(model="gpt-image-1", prompt="x"))
    assert "response_format" not in transport.body()
    assert result.usage == Usage(50, 4160)


def test_dall_e_3_makes_one_call_per_image() -> None:
    data = {"created": 1, "data": [{"b64_json": base64.b64encode(mock_png("x", 8, 8)).decode()}]}
    transport = ScriptedTransport(json_response(200, data), json_response(200, data))
    result = _provider(transport, []).generate_images(ImageRequest(model="dall-e-3", prompt="x", n=2))
    assert transport.calls == 2
    assert [transport.body(i)["n"] for i in range(2)] == [1, 1]
    assert len(result.images) == 2


def test_an_answer_of_the_wrong_shape_is_a_provider_error() -> None:
    transport = ScriptedTransport(json_response(200, {"id": "x", "choices": []}))
    with pytest.raises(UpstreamError) as caught:
        _provider(transport, []).chat(CHAT)
    assert caught.value.upstream_code == "malformed_response"
