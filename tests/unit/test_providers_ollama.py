"""The Ollama adapter against Ollama's real ``/api/chat`` and ``/api/embed`` shapes."""

from __future__ import annotations

import pytest

from tests.unit.test_providers_fakes import KEYS, ScriptedTransport, json_response, make_http, timeout_step
from tollgate.providers.base import ChatMessage, ChatRequest, EmbeddingRequest, Usage
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError, UpstreamTimeout
from tollgate.providers.keys import StaticProviderKeys
from tollgate.providers.ollama import OllamaProvider

CHAT_OK = {
    "model": "llama3.1",
    "created_at": "2024-07-22T20:33:28.123648Z",
    "message": {"role": "assistant", "content": "Hello! How are you today?"},
    "done_reason": "stop",
    "done": True,
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}
EMBED_OK = {
    "model": "all-minilm",
    "embeddings": [[0.010071029, -0.0017594862], [-0.0098027075, 0.06042469]],
    "total_duration": 14143917,
    "load_duration": 1019500,
    "prompt_eval_count": 8,
}
NOT_FOUND = {"error": 'model "llama9" not found, try pulling it first'}

CHAT = ChatRequest(
    model="llama3.1",
    messages=(ChatMessage("system", "Be kind."), ChatMessage("user", "Hello")),
    max_tokens=128,
    temperature=0.1,
    seed=5,
    stop=("</s>",),
)


def _provider(transport: ScriptedTransport, sleeps: list[float]) -> OllamaProvider:
    return OllamaProvider(make_http(transport, sleeps), KEYS)


def test_chat_is_not_streamed_and_options_carry_the_knobs() -> None:
    transport = ScriptedTransport(json_response(200, CHAT_OK))
    result = _provider(transport, []).chat(CHAT)
    sent = transport.requests[0]
    assert str(sent.url) == "http://ollama.local:11434/api/chat"
    assert "Authorization" not in sent.headers
    assert transport.body() == {
        "model": "llama3.1",
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}],
        "stream": False,
        "options": {"temperature": 0.1, "seed": 5, "num_predict": 128, "stop": ["</s>"]},
    }
    assert result.text == "Hello! How are you today?"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(26, 298)


def test_embed_sends_every_input_at_once() -> None:
    transport = ScriptedTransport(json_response(200, EMBED_OK))
    result = _provider(transport, []).embed(EmbeddingRequest(model="all-minilm", inputs=("a", "b")))
    assert str(transport.requests[0].url) == "http://ollama.local:11434/api/embed"
    assert transport.body() == {"model": "all-minilm", "input": ["a", "b"]}
    assert result.vectors == ((0.010071029, -0.0017594862), (-0.0098027075, 0.06042469))
    assert result.usage == Usage(8, 0)


def test_an_error_body_is_a_provider_error_and_a_404_is_not_retried() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(json_response(404, NOT_FOUND))
    with pytest.raises(UpstreamError) as caught:
        _provider(transport, sleeps).chat(CHAT)
    assert transport.calls == 1
    assert sleeps == []
    assert 'model "llama9" not found' in caught.value.detail
    assert caught.value.fallback_ok  # the model is missing here: another provider may have one


def test_a_400_is_not_retried() -> None:
    transport = ScriptedTransport(json_response(400, {"error": "invalid options: foo"}))
    with pytest.raises(UpstreamError):
        _provider(transport, []).chat(CHAT)
    assert transport.calls == 1


def test_a_503_with_retry_after_is_retried() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(
        json_response(
            503,
            {"error": "server busy, please try again. maximum pending requests exceeded"},
            {"retry-after": "2"},
        ),
        json_response(200, CHAT_OK),
    )
    assert _provider(transport, sleeps).chat(CHAT).usage == Usage(26, 298)
    assert sleeps == [2.0]


def test_a_timeout_is_a_provider_timeout() -> None:
    transport = ScriptedTransport(timeout_step, timeout_step, timeout_step)
    with pytest.raises(UpstreamTimeout):
        _provider(transport, []).chat(CHAT)


def test_without_a_base_url_it_is_not_configured() -> None:
    provider = OllamaProvider(make_http(ScriptedTransport(), []), StaticProviderKeys({}))
    assert not provider.is_configured()
    with pytest.raises(ProviderNotConfigured):
        provider.chat(CHAT)


def test_an_ollama_key_is_sent_as_a_bearer_token() -> None:
    keys = StaticProviderKeys({"ollama_base_url": "https://ollama.example.com/", "ollama": "proxy-token"})
    transport = ScriptedTransport(json_response(200, CHAT_OK))
    OllamaProvider(make_http(transport, []), keys).chat(CHAT)
    assert str(transport.requests[0].url) == "https://ollama.example.com/api/chat"
    assert transport.requests[0].headers["Authorization"] == "Bearer proxy-token"
