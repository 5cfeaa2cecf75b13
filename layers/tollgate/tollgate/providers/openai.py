"""OpenAI: ``/v1/chat/completions``, ``/v1/embeddings`` and ``/v1/images/generations``.

Auth is ``Authorization: Bearer``. Errors are ``{"error": {"message", "type", "param",
"code"}}``. Images are asked for as base64 (``response_format: b64_json`` for the DALL-E
models; the ``gpt-image`` models always answer base64 and refuse that parameter).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx
from pydantic import Field

from tollgate.providers.base import (
    NOT_REPORTED,
    ChatRequest,
    ChatResult,
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    Kind,
    ProviderBase,
    Usage,
)
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError
from tollgate.providers.http import ProviderHttp, WireModel, json_error_message, parse_body, text_snippet
from tollgate.providers.imaging import image_info
from tollgate.providers.keys import ProviderKeySource

NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com"

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


class _Message(WireModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(WireModel):
    index: int = 0
    message: _Message
    finish_reason: str | None = None


class _ChatUsage(WireModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _ChatResponse(WireModel):
    id: str | None = None
    model: str
    choices: list[_Choice] = Field(min_length=1)
    usage: _ChatUsage | None = None


class _Embedding(WireModel):
    index: int
    embedding: list[float]


class _EmbeddingUsage(WireModel):
    prompt_tokens: int | None = None


class _EmbeddingResponse(WireModel):
    model: str
    data: list[_Embedding]
    usage: _EmbeddingUsage | None = None


class _ImageData(WireModel):
    b64_json: str
    revised_prompt: str | None = None


class _ImageUsage(WireModel):
    input_tokens: int | None = None
    output_tokens: int | None = None


class _ImageResponse(WireModel):
    data: list[_ImageData] = Field(min_length=1)
    usage: _ImageUsage | None = None


def openai_error(response: httpx.Response) -> tuple[str, str | None]:
    """(message, code or type) from an OpenAI error body."""
    body = json_error_message(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code") or error.get("type")
        return str(error.get("message") or ""), str(code) if code else None
    return text_snippet(response), None


class OpenAIProvider(ProviderBase):
    """OpenAI's REST API (or any server speaking it exactly, given ``base_url``)."""

    name = NAME
    kinds: frozenset[Kind] = frozenset({"chat", "embedding", "image"})

    def __init__(self, http: ProviderHttp, keys: ProviderKeySource, base_url: str = DEFAULT_BASE_URL) -> None:
        self._http = http
        self._keys = keys
        self._base_url = base_url.rstrip("/")

    def is_configured(self) -> bool:
        return self._keys.key_for(NAME) is not None

    def _headers(self) -> dict[str, str]:
        key = self._keys.key_for(NAME)
        if key is None:
            raise ProviderNotConfigured(NAME)
        return {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def _post(self, path: str, body: dict[str, Any], read_timeout: float) -> httpx.Response:
        return self._http.post(
            NAME,
            f"{self._base_url}{path}",
            headers=self._headers(),
            json_body=body,
            read_timeout=read_timeout,
            error_parser=openai_error,
        )

    def chat(self, request: ChatRequest) -> ChatResult:
        """``POST /v1/chat/completions`` (not streamed)."""
        messages: list[dict[str, Any]] = []
        for message in request.messages:
            item: dict[str, Any] = {"role": message.role, "content": message.content}
            if message.name:
                item["name"] = message.name
            messages.append(item)
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        optional = {
            "max_completion_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stop": list(request.stop) or None,
            "user": request.user,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        answer = parse_body(
            NAME, self._post("/v1/chat/completions", body, self._http.timeouts.chat), _ChatResponse
        )
        choice = answer.choices[0]
        usage = answer.usage
        return ChatResult(
            text=choice.message.content or choice.message.refusal or "",
            finish_reason=_FINISH.get(choice.finish_reason or "", "other"),
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else NOT_REPORTED,
            provider=NAME,
            model=answer.model,
            response_id=answer.id,
            raw_finish_reason=choice.finish_reason,
        )

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """``POST /v1/embeddings`` with ``encoding_format: float``."""
        body: dict[str, Any] = {
            "model": request.model,
            "input": list(request.inputs),
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user:
            body["user"] = request.user
        answer = parse_body(
            NAME, self._post("/v1/embeddings", body, self._http.timeouts.chat), _EmbeddingResponse
        )
        if len(answer.data) != len(request.inputs):
            raise UpstreamError(
                f"{NAME} returned {len(answer.data)} embeddings for {len(request.inputs)} inputs",
                provider=NAME,
                upstream_code="malformed_response",
                retryable=True,
            )
        vectors = tuple(tuple(item.embedding) for item in sorted(answer.data, key=lambda item: item.index))
        tokens = answer.usage.prompt_tokens if answer.usage else None
        return EmbeddingResult(
            vectors=vectors,
            usage=Usage(tokens, 0) if tokens is not None else NOT_REPORTED,
            provider=NAME,
            model=answer.model,
        )

    def generate_images(self, request: ImageRequest) -> ImageResult:
        """``POST /v1/images/generations``. DALL-E 3 makes one image per call, so ``n > 1``
        is that many calls."""
        calls = request.n if request.model == "dall-e-3" else 1
        per_call = 1 if calls > 1 else request.n
        images: list[GeneratedImage] = []
        input_tokens: int | None = None
        output_tokens: int | None = None
        for _ in range(calls):
            answer = parse_body(
                NAME,
                self._post(
                    "/v1/images/generations", self._image_body(request, per_call), self._http.timeouts.image
                ),
                _ImageResponse,
            )
            images.extend(self._image(request, item) for item in answer.data)
            if answer.usage is not None:
                input_tokens = (input_tokens or 0) + (answer.usage.input_tokens or 0)
                output_tokens = (output_tokens or 0) + (answer.usage.output_tokens or 0)
        return ImageResult(
            images=tuple(images),
            usage=Usage(input_tokens, output_tokens),
            provider=NAME,
            model=request.model,
        )

    @staticmethod
    def _image_body(request: ImageRequest, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "n": n,
            "size": request.size,
        }
        if request.model.startswith("dall-e"):
            body["response_format"] = "b64_json"
        elif request.output_format != "png":
            body["output_format"] = request.output_format
        if request.quality:
            body["quality"] = request.quality
        if request.style:
            body["style"] = request.style
        if request.user:
            body["user"] = request.user
        return body

    @staticmethod
    def _image(request: ImageRequest, item: _ImageData) -> GeneratedImage:
        try:
            data = base64.b64decode(item.b64_json, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UpstreamError(
                f"{NAME} sent an image that is not base64", provider=NAME, upstream_code="malformed_response"
            ) from exc
        info = image_info(data)
        return GeneratedImage(
            data=data,
            format=info.format if info else request.output_format,
            width=info.width if info else request.width,
            height=info.height if info else request.height,
            revised_prompt=item.revised_prompt,
        )
