"""Answer bodies in OpenAI's shapes, so the official SDK reads them unchanged (S6).

``model`` in an answer is the Tollgate name of the model that answered (``openai/gpt-4o-mini``,
or the next model of a fallback chain), so a client can see which one it got.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tollgate.generation.registry import Alias, ModelSpec
from tollgate.providers.base import ChatResult, FinishReason, GeneratedImage

OpenAIFinish = Literal["stop", "length", "content_filter", "tool_calls"]
_FINISH: dict[FinishReason, OpenAIFinish] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "other": "stop",
}


class OpenAIShape(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class AssistantMessageOut(OpenAIShape):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChoiceOut(OpenAIShape):
    index: int = 0
    message: AssistantMessageOut
    finish_reason: OpenAIFinish
    logprobs: None = None


class ChatUsageOut(OpenAIShape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(OpenAIShape):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: ChatUsageOut
    system_fingerprint: str | None = None


def chat_completion(
    result: ChatResult, *, completion_id: str, model: str, created: int, input_tokens: int, output_tokens: int
) -> ChatCompletionOut:
    """The ``chat.completion`` object. Token counts are passed in: the provider's when it
    reported them, Tollgate's own count otherwise."""
    return ChatCompletionOut(
        id=completion_id,
        created=created,
        model=model,
        choices=[
            ChoiceOut(
                message=AssistantMessageOut(content=result.text), finish_reason=_FINISH[result.finish_reason]
            )
        ],
        usage=ChatUsageOut(
            prompt_tokens=input_tokens,
            completion_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        ),
    )


class EmbeddingOut(OpenAIShape):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str
    """A list of floats, or with ``encoding_format: base64`` the little-endian float32 bytes
    in base64 (what the ``openai`` SDK asks for by default)."""


class EmbeddingUsageOut(OpenAIShape):
    prompt_tokens: int
    total_tokens: int


class EmbeddingListOut(OpenAIShape):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingUsageOut


def encode_base64_floats(vector: Sequence[float]) -> str:
    """A vector as OpenAI's ``base64`` encoding: float32, little-endian."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_list(
    vectors: Sequence[Sequence[float]],
    *,
    model: str,
    input_tokens: int,
    encoding_format: Literal["float", "base64"] = "float",
) -> EmbeddingListOut:
    """The ``list`` of ``embedding`` objects, in input order."""
    return EmbeddingListOut(
        data=[
            EmbeddingOut(
                index=index,
                embedding=encode_base64_floats(vector) if encoding_format == "base64" else list(vector),
            )
            for index, vector in enumerate(vectors)
        ],
        model=model,
        usage=EmbeddingUsageOut(prompt_tokens=input_tokens, total_tokens=input_tokens),
    )


class ModelOut(OpenAIShape):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    kind: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    chain: list[str] | None = None
    """For an alias: the models it tries, in order."""


class ModelListOut(OpenAIShape):
    object: Literal["list"] = "list"
    data: list[ModelOut]


def model_list(models: Sequence[ModelSpec], aliases: Sequence[Alias] = (), *, created: int) -> ModelListOut:
    """``GET /v1/models``: every model (owned by its provider), then every alias (owned by
    ``tollgate``, with its chain). ``created`` is one fixed timestamp (the registry's)."""
    data = [
        ModelOut(
            id=spec.name,
            created=created,
            owned_by=spec.provider,
            kind=spec.kind,
            context_window=spec.context_window,
            max_output_tokens=spec.max_output_tokens,
        )
        for spec in models
    ]
    data.extend(
        ModelOut(id=alias.name, created=created, owned_by="tollgate", kind="alias", chain=list(alias.chain))
        for alias in aliases
    )
    return ModelListOut(data=data)


class ImageDataOut(OpenAIShape):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesOut(OpenAIShape):
    created: int
    data: list[ImageDataOut]


def images_b64(images: Sequence[GeneratedImage], *, created: int) -> ImagesOut:
    """``/v1/images/generations`` with ``response_format: b64_json``."""
    return ImagesOut(
        created=created,
        data=[
            ImageDataOut(
                b64_json=base64.b64encode(image.data).decode("ascii"), revised_prompt=image.revised_prompt
            )
            for image in images
        ],
    )
