"""Where provider credentials come from.

In AWS: one JSON secret (Secrets Manager or SSM), read through Powertools Parameters with a
cache (``tollgate.aws.provider_keys``). Locally: the ``*_API_KEY`` environment variables, read
by ``Settings``. A provider whose credential is absent is "not configured".

A credential is the API key, except for ``ollama``, whose "credential" is its base URL (a local
Ollama needs no key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from tollgate.settings import Settings

OLLAMA_BASE_URL = "ollama_base_url"
"""The name under which the Ollama base URL is looked up (``OLLAMA_BASE_URL`` locally)."""


class ProviderKeySource(Protocol):
    def key_for(self, provider: str) -> str | None:
        """The credential for ``provider`` (``openai``, ``anthropic``, ...), or ``None``."""
        ...


class StaticProviderKeys:
    """Credentials from a mapping (tests; or keys already fetched elsewhere)."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = {name: value for name, value in keys.items() if value}

    def key_for(self, provider: str) -> str | None:
        return self._keys.get(provider)


class EnvProviderKeys(StaticProviderKeys):
    """The local credentials: ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``,
    ``STABILITY_API_KEY`` and ``OLLAMA_BASE_URL``, as read by ``Settings``."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EnvProviderKeys:
        secrets = {
            "openai": settings.openai_api_key,
            "anthropic": settings.anthropic_api_key,
            "gemini": settings.gemini_api_key,
            "stability": settings.stability_api_key,
        }
        keys = {name: secret.get_secret_value().strip() for name, secret in secrets.items() if secret}
        if settings.ollama_base_url and settings.ollama_base_url.strip():
            keys[OLLAMA_BASE_URL] = settings.ollama_base_url.strip()
        return cls(keys)


class ChainedProviderKeys:
    """The first source that has a credential wins (environment first, then AWS)."""

    def __init__(self, sources: Sequence[ProviderKeySource]) -> None:
        self._sources = tuple(sources)

    def key_for(self, provider: str) -> str | None:
        for source in self._sources:
            value = source.key_for(provider)
            if value:
                return value
        return None
