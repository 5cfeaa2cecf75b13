"""Request bodies of the generation API: the OpenAI-compatible ones (``/v1/chat/completions``,
``/v1/embeddings``, ``/v1/images/generations``) and the native ``/v1/generate`` (S6).

Unknown fields are refused (``422`` naming them), as are features Tollgate does not offer
(``stream: true``, ``n > 1`` for chat, tools): a clear refusal beats a silent difference.
Prompt text is kept exactly as sent (no stripping: leading whitespace can matter to a model).
Tollgate's own fields ride along on the OpenAI shapes (the SDK's ``extra_body``): ``cache``
and ``feature``; ``metadata`` carries the mock provider's knobs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tollgate.generation.cache_key import CacheOptions
from tollgate.generation.registry import parse_size
from tollgate.providers.base import ChatMessage, ChatRequest, EmbeddingRequest, ImageRequest

MAX_MESSAGES = 1_000
MAX_INPUTS = 2_048
MAX_STOP = 4

ModelName = Annotated[str, Field(min_length=1, max_length=200)]
FeatureName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")]
UserTag = Annotated[str, Field(max_length=256)]


def _json_boolean(value: Any) -> Any:
    # pydantic's Literal matches 0 to False and true to 1, even strict: the JSON type first.
    if not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "Input should be a valid boolean")
    return value


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


class GenerationBody(BaseModel):
    """A generation request body: unknown fields refused, text kept as sent."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class TextPart(GenerationBody):
    type: Literal["text"]
    text: str


class MessageIn(GenerationBody):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")

    def to_message(self) -> ChatMessage:
        """The provider-neutral message (``developer`` is OpenAI's newer name for ``system``)."""
        text = (
            self.content if isinstance(self.content, str) else "\n".join(part.text for part in self.content)
        )
        return ChatMessage(
            role="system" if self.role == "developer" else self.role, content=text, name=self.name
        )


def _stop_tuple(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


class SamplingParams(GenerationBody):
    """The knobs of a chat or completion, shared by the OpenAI and native shapes."""

    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stop: str | list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, max_length=MAX_STOP)


class ChatCompletionRequest(GenerationBody):
    """``POST /v1/chat/completions`` (OpenAI's shape)."""

    model: ModelName
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stop: str | list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, max_length=MAX_STOP)
    n: Annotated[Literal[1], BeforeValidator(_json_integer)] = 1
    stream: Annotated[Literal[False], BeforeValidator(_json_boolean)] = False
    user: UserTag | None = None
    metadata: dict[str, Any] | None = Field(default=None, max_length=16)
    cache: CacheOptions | None = None
    feature: FeatureName | None = None

    @property
    def effective_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def to_provider(self, model_id: str, max_tokens: int | None = None) -> ChatRequest:
        """The provider request for ``model_id``; ``max_tokens`` is the gateway's default (or
        clamp) when the client names none."""
        return ChatRequest(
            model=model_id,
            messages=tuple(message.to_message() for message in self.messages),
            max_tokens=self.effective_max_tokens or max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=_stop_tuple(self.stop),
            user=self.user,
            metadata=self.metadata or {},
        )

    def cache_payload(self) -> dict[str, Any]:
        """What the cache key hashes (``normalize_request`` drops what does not matter)."""
        return self.model_dump(exclude_none=True)


class EmbeddingsRequest(GenerationBody):
    """``POST /v1/embeddings`` (OpenAI's shape; token-id arrays are not accepted)."""

    model: ModelName
    input: str | list[str] = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1, le=8_192)
    encoding_format: Literal["float", "base64"] = "float"
    user: UserTag | None = None
    metadata: dict[str, Any] | None = Field(default=None, max_length=16)
    cache: CacheOptions | None = None
    feature: FeatureName | None = None

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per request")
        return value

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,) if isinstance(self.input, str) else tuple(self.input)

    def to_provider(self, model_id: str) -> EmbeddingRequest:
        return EmbeddingRequest(
            model=model_id,
            inputs=self.inputs,
            dimensions=self.dimensions,
            user=self.user,
            metadata=self.metadata or {},
        )

    def cache_payload(self) -> dict[str, Any]:
        # The answer's encoding is presentation: float and base64 share one entry.
        return self.model_dump(exclude_none=True, exclude={"encoding_format"})


class ImageGenerationRequest(GenerationBody):
    """``POST /v1/images/generations`` (OpenAI's shape)."""

    prompt: str = Field(min_length=1, max_length=32_000)
    model: ModelName = "default-image"
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = None
    quality: str | None = Field(default=None, max_length=20)
    style: str | None = Field(default=None, max_length=40)
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: UserTag | None = None
    metadata: dict[str, Any] | None = Field(default=None, max_length=16)
    cache: CacheOptions | None = None
    feature: FeatureName | None = None

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    def to_provider(self, model_id: str, default_size: str) -> ImageRequest:
        width, height = parse_size(self.size or default_size)
        return ImageRequest(
            model=model_id,
            prompt=self.prompt,
            width=width,
            height=height,
            quality=self.quality,
            style=self.style,
            n=self.n,
            user=self.user,
            metadata=self.metadata or {},
        )

    def cache_payload(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"response_format"})


def plain_numbers(value: Any) -> Any:
    """``value`` with every ``Decimal`` made an ``int`` or a ``float``: free-form fields
    (``metadata``) of a body read with exact numbers are stored and sent as plain JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_numbers(item) for item in value]
    return value


class GenerateRequest(GenerationBody):
    """``POST /v1/generate``: a prompt, messages, or a template with its variables (S8).

    ``model`` may be left out for a template that names one (``GenerationService`` asks for it
    otherwise). The route reads the body with exact numbers, so ``variables`` keep a number's
    digits (``Decimal``); ``metadata`` is made plain JSON again."""

    model: ModelName | None = None
    prompt: str | None = Field(default=None, min_length=1)
    messages: list[MessageIn] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    template_id: str | None = Field(default=None, min_length=1, max_length=64)
    template_version: int | None = Field(default=None, ge=1)
    variables: dict[str, Any] | None = None
    feature: FeatureName | None = None
    params: SamplingParams = Field(default_factory=SamplingParams)
    cache: CacheOptions | None = None
    metadata: Annotated[dict[str, Any] | None, AfterValidator(plain_numbers)] = Field(
        default=None, max_length=16
    )

    @model_validator(mode="after")
    def _one_source(self) -> GenerateRequest:
        given = [name for name in ("prompt", "messages", "template_id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of prompt, messages or template_id")
        if (self.variables is not None or self.template_version is not None) and self.template_id is None:
            raise ValueError("variables and template_version go with template_id")
        return self

    @property
    def kind(self) -> Literal["chat", "completion"]:
        """``completion`` for a single prompt (or a rendered template), ``chat`` for messages."""
        return "chat" if self.messages is not None else "completion"

    def to_provider(
        self, model_id: str, rendered_prompt: str | None = None, max_tokens: int | None = None
    ) -> ChatRequest:
        """The provider request; a template's text must be rendered first (``rendered_prompt``)."""
        if self.messages is not None:
            messages = tuple(message.to_message() for message in self.messages)
        else:
            text = rendered_prompt if rendered_prompt is not None else self.prompt
            if text is None:
                raise ValueError("a template request needs its rendered prompt")
            messages = (ChatMessage(role="user", content=text),)
        return ChatRequest(
            model=model_id,
            messages=messages,
            max_tokens=self.params.max_tokens or max_tokens,
            temperature=self.params.temperature,
            top_p=self.params.top_p,
            seed=self.params.seed,
            stop=_stop_tuple(self.params.stop),
            metadata=self.metadata or {},
        )
