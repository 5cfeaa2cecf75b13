"""The providers of one process, by name, and whether each is configured.

``build_providers(settings, keys)`` is what the composition root calls once per process; tests
build a ``ProviderCatalog`` around an ``httpx.Client`` with a ``MockTransport`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import httpx
from msgspec import Struct

from tollgate.providers.anthropic import AnthropicProvider
from tollgate.providers.base import Kind, Provider
from tollgate.providers.errors import ProviderNotConfigured
from tollgate.providers.gemini import GeminiProvider
from tollgate.providers.http import ProviderHttp, RetryPolicy, Timeouts, shared_client
from tollgate.providers.keys import ProviderKeySource
from tollgate.providers.mock import MockProvider
from tollgate.providers.ollama import OllamaProvider
from tollgate.providers.openai import OpenAIProvider
from tollgate.providers.stability import StabilityProvider
from tollgate.settings import Settings

PROVIDER_NAMES = ("openai", "anthropic", "gemini", "stability", "ollama", "mock")
PROVIDER_KINDS: Mapping[str, frozenset[Kind]] = {
    adapter.name: adapter.kinds
    for adapter in (
        OpenAIProvider,
        AnthropicProvider,
        GeminiProvider,
        StabilityProvider,
        OllamaProvider,
        MockProvider,
    )
}
"""The kinds of model each provider serves (the registry checks its models against it)."""


class ProviderStatus(Struct, frozen=True):
    """One line of ``GET /v1/providers``."""

    name: str
    configured: bool
    kinds: tuple[Kind, ...]


class ProviderCatalog:
    def __init__(
        self,
        providers: Iterable[Provider],
        *,
        refresh_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers: dict[str, Provider] = {provider.name: provider for provider in providers}
        # Which providers have credentials is asked on every request; the answer comes from
        # cached secrets anyway, so it is kept for ``refresh_seconds``.
        self._refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._configured: tuple[float, frozenset[str]] | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def get(self, name: str) -> Provider:
        """The provider called ``name``, if it is configured; else ``ProviderNotConfigured``."""
        provider = self._providers.get(name)
        if provider is None or not provider.is_configured():
            raise ProviderNotConfigured(name)
        return provider

    def configured(self) -> frozenset[str]:
        """The names of the providers that can be called now (as of at most
        ``refresh_seconds`` ago: a key added or removed is noticed within that)."""
        now = self._monotonic()
        if self._configured is None or now - self._configured[0] >= self._refresh_seconds:
            names = frozenset(name for name, provider in self._providers.items() if provider.is_configured())
            self._configured = (now, names)
        return self._configured[1]

    def statuses(self) -> list[ProviderStatus]:
        """Every known provider with its configured flag, in a stable order."""
        return [
            ProviderStatus(name, provider.is_configured(), tuple(sorted(provider.kinds)))
            for name, provider in self._providers.items()
        ]


def http_from_settings(
    settings: Settings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProviderHttp:
    """The retrying HTTP sender with the settings' timeouts and retry policy."""
    return ProviderHttp(
        client=client or shared_client(),
        policy=RetryPolicy(
            max_attempts=settings.provider_max_attempts,
            base_delay=settings.provider_retry_base_seconds,
            max_delay=settings.provider_retry_max_seconds,
            retry_after_cap=settings.provider_retry_after_cap_seconds,
            budget_seconds=settings.provider_retry_budget_seconds,
        ),
        timeouts=Timeouts(
            chat=settings.provider_timeout_seconds,
            image=settings.provider_image_timeout_seconds,
            connect=settings.provider_connect_timeout_seconds,
        ),
        sleep=sleep,
    )


def build_providers(
    settings: Settings,
    keys: ProviderKeySource,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    base_urls: Mapping[str, str] | None = None,
) -> ProviderCatalog:
    """Every provider, wired to the shared client (or ``client``), the key source and the
    settings. ``base_urls`` overrides the settings' base URLs (tests)."""
    http = http_from_settings(settings, client, sleep)
    urls = {
        "openai": settings.openai_base_url,
        "anthropic": settings.anthropic_base_url,
        "gemini": settings.gemini_base_url,
        "stability": settings.stability_base_url,
    } | dict(base_urls or {})
    return ProviderCatalog(
        [
            OpenAIProvider(http, keys, urls["openai"]),
            AnthropicProvider(http, keys, urls["anthropic"]),
            GeminiProvider(http, keys, urls["gemini"]),
            StabilityProvider(http, keys, urls["stability"]),
            OllamaProvider(http, keys),
            MockProvider(
                enabled=settings.mock_provider_enabled,
                embedding_dimensions=settings.mock_embedding_dimensions,
                sleep=sleep,
            ),
        ]
    )
