"""AI providers behind one interface (S6): OpenAI, Anthropic, Gemini, Stability AI, Ollama and
the deterministic ``mock``. See ``docs/providers.md``.

- ``base``: the ``Provider`` protocol and its typed requests and results;
- ``errors``: ``UpstreamError`` (502), ``UpstreamTimeout`` (504), ``ProviderNotConfigured``;
- ``http``: the shared ``httpx`` client, timeouts, retries with jittered backoff;
- ``keys``: where credentials come from (env locally; ``tollgate.aws.provider_keys`` in AWS);
- one module per provider, and ``catalog`` to build them all.
"""

from tollgate.providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    Kind,
    Provider,
    Usage,
)
from tollgate.providers.catalog import PROVIDER_NAMES, ProviderCatalog, ProviderStatus, build_providers
from tollgate.providers.errors import (
    ProviderNotConfigured,
    UnsupportedOperation,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = [
    "PROVIDER_NAMES",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "EmbeddingRequest",
    "EmbeddingResult",
    "FinishReason",
    "GeneratedImage",
    "ImageRequest",
    "ImageResult",
    "Kind",
    "Provider",
    "ProviderCatalog",
    "ProviderNotConfigured",
    "ProviderStatus",
    "UnsupportedOperation",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
    "build_providers",
]
