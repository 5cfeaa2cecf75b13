"""Fallback chains across real adapters (fake transports), and the provider catalog."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.test_providers_anthropic import MESSAGE_OK
from tests.unit.test_providers_fakes import KEYS, ScriptedTransport, json_response
from tests.unit.test_providers_openai import CONTEXT_TOO_LONG, SERVER_ERROR
from tollgate.generation.fallback import call_with_fallback
from tollgate.generation.registry import ModelSpec, load_models
from tollgate.providers.base import ChatMessage, ChatRequest, ChatResult, Provider
from tollgate.providers.catalog import ProviderCatalog, build_providers
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError
from tollgate.providers.keys import StaticProviderKeys
from tollgate.settings import Settings

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "Hello"),), max_tokens=20)


def _catalog(transport: ScriptedTransport, keys: StaticProviderKeys = KEYS, **env: str) -> ProviderCatalog:
    settings = Settings.from_env({"PROVIDER_MAX_ATTEMPTS": "2", **env})
    return build_providers(settings, keys, client=transport.client(), sleep=lambda _: None)


def _chat(provider: Provider, spec: ModelSpec) -> ChatResult:
    return provider.chat(
        ChatRequest(model=spec.model_id, messages=REQUEST.messages, max_tokens=REQUEST.max_tokens)
    )


def test_the_second_provider_answers_when_the_first_keeps_failing() -> None:
    # Given OpenAI failing with 500s (retried twice) and Anthropic answering
    transport = ScriptedTransport(
        json_response(500, SERVER_ERROR), json_response(500, SERVER_ERROR), json_response(200, MESSAGE_OK)
    )
    catalog = _catalog(transport)
    chain = load_models().resolve("fast-chat", configured=catalog.configured(), kind="chat")
    # When
    answered = call_with_fallback(chain, catalog, _chat)
    # Then Anthropic's answer, and the record of OpenAI's failure
    assert answered.model.name == "anthropic/claude-3-5-haiku-20241022"
    assert answered.value.text == "Hello, world."
    assert answered.fell_back
    (failure,) = answered.failed
    assert (failure.model, failure.status) == ("openai/gpt-4o-mini", 500)
    assert [str(r.url) for r in transport.requests] == [
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/chat/completions",
        "https://api.anthropic.com/v1/messages",
    ]
    assert transport.body(2)["model"] == "claude-3-5-haiku-20241022"


def test_unconfigured_providers_are_skipped_down_to_the_mock() -> None:
    transport = ScriptedTransport()
    catalog = _catalog(transport, StaticProviderKeys({}))
    chain = load_models().resolve("fast-chat", configured=catalog.configured())
    assert [m.name for m in chain.models] == ["mock/chat"]
    assert chain.skipped == (
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku-20241022",
        "gemini/gemini-1.5-flash",
    )
    answered = call_with_fallback(chain, catalog, _chat)
    assert answered.model.name == "mock/chat"
    assert transport.calls == 0


def test_a_provider_that_lost_its_key_is_skipped_at_call_time() -> None:
    # Given a chain resolved while every provider was configured
    models = load_models()
    chain = models.resolve("fast-chat", configured={"openai", "anthropic", "gemini", "mock"})
    catalog = _catalog(ScriptedTransport(), StaticProviderKeys({}))
    # Then the missing keys move the call along to the mock
    answered = call_with_fallback(chain, catalog, _chat)
    assert answered.model.name == "mock/chat"
    assert [f.code for f in answered.failed] == ["not_configured"] * 3


def test_a_request_error_is_not_passed_down_the_chain() -> None:
    transport = ScriptedTransport(json_response(400, CONTEXT_TOO_LONG))
    catalog = _catalog(transport)
    chain = load_models().resolve("fast-chat", configured=catalog.configured())
    with pytest.raises(UpstreamError) as caught:
        call_with_fallback(chain, catalog, _chat)
    assert caught.value.upstream_status == 400
    assert transport.calls == 1


def test_when_every_model_fails_the_last_error_lists_the_attempts() -> None:
    transport = ScriptedTransport(*[json_response(503, SERVER_ERROR)] * 2)
    catalog = _catalog(transport, StaticProviderKeys({"openai": "sk-x"}), MOCK_PROVIDER_ENABLED="false")
    chain = load_models().resolve("smart-chat", configured={"openai", "mock"})
    with pytest.raises(UpstreamError) as caught:
        call_with_fallback(chain, catalog, _chat)
    # The OpenAI failure is reported, not the mock's "not configured"
    assert (caught.value.status, caught.value.upstream_status) == (502, 503)
    assert caught.value.extra["attempts"] == [
        {"model": "openai/gpt-4o", "code": "server_error", "provider_status": 503},
        {"model": "mock/chat", "code": "not_configured", "provider_status": None},
    ]


def test_the_catalog_lists_each_provider_with_its_configured_status() -> None:
    catalog = _catalog(ScriptedTransport(), StaticProviderKeys({"gemini": "AIza"}))
    statuses = {s.name: (s.configured, s.kinds) for s in catalog.statuses()}
    assert statuses == {
        "openai": (False, ("chat", "embedding", "image")),
        "anthropic": (False, ("chat",)),
        "gemini": (True, ("chat", "embedding")),
        "stability": (False, ("image",)),
        "ollama": (False, ("chat", "embedding")),
        "mock": (True, ("chat", "embedding", "image")),
    }
    assert catalog.configured() == {"gemini", "mock"}
    with pytest.raises(ProviderNotConfigured):
        catalog.get("openai")
    with pytest.raises(ProviderNotConfigured):
        catalog.get("midjourney")


def test_base_urls_come_from_the_settings() -> None:
    transport = ScriptedTransport(json_response(200, MESSAGE_OK))
    catalog = _catalog(transport, ANTHROPIC_BASE_URL="https://anthropic-proxy.internal/")
    catalog.get("anthropic").chat(ChatRequest(model="claude-3-5-haiku-20241022", messages=REQUEST.messages))
    assert str(transport.requests[0].url) == "https://anthropic-proxy.internal/v1/messages"


def test_the_shared_client_is_one_per_process() -> None:
    from tollgate.providers.http import shared_client

    client = shared_client()
    assert isinstance(client, httpx.Client)
    assert shared_client() is client
