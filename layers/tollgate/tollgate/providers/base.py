"""The one interface every provider speaks (S6), and the typed requests and results it takes.

A provider adapter turns a :class:`ChatRequest`, :class:`EmbeddingRequest` or
:class:`ImageRequest` into the provider's real HTTP call and its answer back into a result.
``model`` in a request is the provider's own model id (``gpt-4o-mini``), never the Tollgate
name (``openai/gpt-4o-mini``): the model registry maps one to the other.

Usage is what the provider *reported*; ``None`` means it reported nothing, and the caller
counts tokens itself (``tollgate.tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from msgspec import Struct, field

from tollgate.providers.errors import UnsupportedOperation

Kind = Literal["chat", "embedding", "image"]
Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "other"]
ImageFormat = Literal["png", "jpeg", "webp"]

MAX_IMAGE_SIDE = 4096


class ChatMessage(Struct, frozen=True):
    role: Role
    content: str
    name: str | None = None


class Usage(Struct, frozen=True):
    """Tokens as the provider reported them; either may be ``None`` (not reported)."""

    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def reported(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    @property
    def total_tokens(self) -> int | None:
        if not self.reported:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


NOT_REPORTED = Usage()


class ChatRequest(Struct, frozen=True):
    """A chat (or single-prompt completion, as one user message) for one provider model.

    ``metadata`` never reaches a real provider; the ``mock`` provider reads its knobs there.
    """

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class ChatResult(Struct, frozen=True):
    text: str
    finish_reason: FinishReason
    usage: Usage
    provider: str
    model: str
    """The model that answered, as the provider names it (``gpt-4o-mini-2024-07-18``)."""
    response_id: str | None = None
    raw_finish_reason: str | None = None


class EmbeddingRequest(Struct, frozen=True):
    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    user: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class EmbeddingResult(Struct, frozen=True):
    vectors: tuple[tuple[float, ...], ...]
    """One vector per input, in input order."""
    usage: Usage
    provider: str
    model: str


class ImageRequest(Struct, frozen=True):
    model: str
    prompt: str
    width: int = 1024
    height: int = 1024
    quality: str | None = None
    style: str | None = None
    n: int = 1
    negative_prompt: str | None = None
    seed: int | None = None
    output_format: ImageFormat = "png"
    user: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (1 <= self.width <= MAX_IMAGE_SIDE and 1 <= self.height <= MAX_IMAGE_SIDE):
            raise ValueError(f"image size must be within 1..{MAX_IMAGE_SIDE} on each side")
        if not 1 <= self.n <= 10:
            raise ValueError("n must be within 1..10")

    @property
    def size(self) -> str:
        """The size as OpenAI spells it: ``1024x1024``."""
        return f"{self.width}x{self.height}"


class GeneratedImage(Struct, frozen=True):
    data: bytes
    format: ImageFormat
    width: int
    height: int
    revised_prompt: str | None = None
    seed: int | None = None
    finish_reason: FinishReason = "stop"


class ImageResult(Struct, frozen=True):
    images: tuple[GeneratedImage, ...]
    usage: Usage
    provider: str
    model: str


class Provider(Protocol):
    """What the generation service calls. Unsupported operations raise ``UnsupportedOperation``;
    failures raise ``UpstreamError`` / ``UpstreamTimeout``; a missing key raises
    ``ProviderNotConfigured``."""

    @property
    def name(self) -> str: ...

    @property
    def kinds(self) -> frozenset[Kind]:
        """The kinds of model this provider serves."""
        ...

    def is_configured(self) -> bool:
        """Whether it has what it needs to be called (a key, a base URL)."""
        ...

    def chat(self, request: ChatRequest) -> ChatResult: ...

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult: ...

    def generate_images(self, request: ImageRequest) -> ImageResult: ...


class ProviderBase:
    """Default behaviour for the operations a provider does not offer."""

    name: str = "base"
    kinds: frozenset[Kind] = frozenset()

    def chat(self, request: ChatRequest) -> ChatResult:
        raise UnsupportedOperation(f"{self.name} does not serve chat models")

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        raise UnsupportedOperation(f"{self.name} does not serve embedding models")

    def generate_images(self, request: ImageRequest) -> ImageResult:
        raise UnsupportedOperation(f"{self.name} does not serve image models")


def split_system(messages: tuple[ChatMessage, ...]) -> tuple[str | None, tuple[ChatMessage, ...]]:
    """The system messages joined into one prompt (for APIs that take it apart), and the rest."""
    system = [m.content for m in messages if m.role == "system"]
    rest = tuple(m for m in messages if m.role != "system")
    return ("\n\n".join(system) if system else None), rest
