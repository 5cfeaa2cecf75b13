"""Google Gemini (Generative Language API): ``generateContent``, ``embedContent`` and
``batchEmbedContents`` under ``/v1beta/models/{model}``.

Auth is the ``x-goog-api-key`` header (never a ``?key=`` query: URLs end up in logs). Messages
are ``contents`` of ``parts``, the assistant's role is ``model``, and the system prompt is
``systemInstruction``. Usage is ``usageMetadata`` (thinking tokens are output). Errors are
``{"error": {"code", "message", "status", "details"}}``; a 429 may carry a
``google.rpc.RetryInfo`` detail with the delay to wait, which is honoured like Retry-After.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from tollgate.providers.base import (
    NOT_REPORTED,
    ChatRequest,
    ChatResult,
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    Kind,
    ProviderBase,
    Usage,
    split_system,
)
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError
from tollgate.providers.http import ProviderHttp, WireModel, json_error_message, parse_body, text_snippet
from tollgate.providers.keys import ProviderKeySource

NAME = "gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
BATCH_LIMIT = 100
"""``batchEmbedContents`` takes at most this many requests per call."""

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class _GeminiModel(WireModel):
    """Gemini's JSON is camelCase."""

    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)


class _Part(_GeminiModel):
    text: str | None = None
    thought: bool = False


class _Content(_GeminiModel):
    parts: list[_Part] = Field(default_factory=list)


class _Candidate(_GeminiModel):
    content: _Content | None = None
    finish_reason: str | None = None


class _UsageMetadata(_GeminiModel):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    thoughts_token_count: int | None = None


class _PromptFeedback(_GeminiModel):
    block_reason: str | None = None


class _GenerateResponse(_GeminiModel):
    candidates: list[_Candidate] = Field(default_factory=list)
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: _UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None


class _Values(_GeminiModel):
    values: list[float]


class _EmbedResponse(_GeminiModel):
    embedding: _Values


class _BatchEmbedResponse(_GeminiModel):
    embeddings: list[_Values]


def gemini_error(response: httpx.Response) -> tuple[str, str | None]:
    """(message, status such as ``INVALID_ARGUMENT``) from a Google API error body."""
    body = json_error_message(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        status = error.get("status")
        return str(error.get("message") or ""), str(status) if status else None
    return text_snippet(response), None


def gemini_retry_delay(response: httpx.Response) -> float | None:
    """The ``retryDelay`` (``"37s"``) of a ``google.rpc.RetryInfo`` error detail, in seconds."""
    body = json_error_message(response)
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


class GeminiProvider(ProviderBase):
    name = NAME
    kinds: frozenset[Kind] = frozenset({"chat", "embedding"})

    def __init__(self, http: ProviderHttp, keys: ProviderKeySource, base_url: str = DEFAULT_BASE_URL) -> None:
        self._http = http
        self._keys = keys
        self._base_url = base_url.rstrip("/")

    def is_configured(self) -> bool:
        return self._keys.key_for(NAME) is not None

    def _post(self, model: str, method: str, body: dict[str, Any]) -> httpx.Response:
        key = self._keys.key_for(NAME)
        if key is None:
            raise ProviderNotConfigured(NAME)
        return self._http.post(
            NAME,
            f"{self._base_url}/v1beta/models/{quote(model, safe='-._')}:{method}",
            headers={"x-goog-api-key": key, "Accept": "application/json"},
            json_body=body,
            read_timeout=self._http.timeouts.chat,
            error_parser=gemini_error,
            retry_hint=gemini_retry_delay,
        )

    def chat(self, request: ChatRequest) -> ChatResult:
        """``POST /v1beta/models/{model}:generateContent``."""
        system, turns = split_system(request.messages)
        body: dict[str, Any] = {
            "contents": [
                {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
                for m in turns
            ]
        }
        if system is not None:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config = {
            "maxOutputTokens": request.max_tokens,
            "temperature": request.temperature,
            "topP": request.top_p,
            "seed": request.seed,
            "stopSequences": list(request.stop) or None,
        }
        config = {name: value for name, value in config.items() if value is not None}
        if config:
            body["generationConfig"] = config
        answer = parse_body(NAME, self._post(request.model, "generateContent", body), _GenerateResponse)
        meta = answer.usage_metadata
        usage = NOT_REPORTED
        if meta is not None:
            output = None
            if meta.candidates_token_count is not None or meta.thoughts_token_count is not None:
                output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
            usage = Usage(meta.prompt_token_count, output)
        if not answer.candidates:
            # The prompt itself was blocked: no candidate, only promptFeedback.block_reason.
            reason = answer.prompt_feedback.block_reason if answer.prompt_feedback else None
            return ChatResult(
                text="",
                finish_reason="content_filter" if reason else "other",
                usage=usage,
                provider=NAME,
                model=answer.model_version or request.model,
                response_id=answer.response_id,
                raw_finish_reason=reason,
            )
        candidate = answer.candidates[0]
        parts = candidate.content.parts if candidate.content else []
        return ChatResult(
            text="".join(part.text or "" for part in parts if not part.thought),
            finish_reason=_FINISH.get(candidate.finish_reason or "", "other"),
            usage=usage,
            provider=NAME,
            model=answer.model_version or request.model,
            response_id=answer.response_id,
            raw_finish_reason=candidate.finish_reason,
        )

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """One input: ``:embedContent``; several: ``:batchEmbedContents`` in chunks of 100.
        Gemini reports no token usage for embeddings."""
        resource = f"models/{request.model}"

        def item(text: str) -> dict[str, Any]:
            entry: dict[str, Any] = {"model": resource, "content": {"parts": [{"text": text}]}}
            if request.dimensions is not None:
                entry["outputDimensionality"] = request.dimensions
            return entry

        vectors: list[tuple[float, ...]] = []
        if len(request.inputs) == 1:
            single = parse_body(
                NAME, self._post(request.model, "embedContent", item(request.inputs[0])), _EmbedResponse
            )
            vectors.append(tuple(single.embedding.values))
        else:
            for start in range(0, len(request.inputs), BATCH_LIMIT):
                chunk = request.inputs[start : start + BATCH_LIMIT]
                body = {"requests": [item(text) for text in chunk]}
                batch = parse_body(
                    NAME, self._post(request.model, "batchEmbedContents", body), _BatchEmbedResponse
                )
                if len(batch.embeddings) != len(chunk):
                    raise UpstreamError(
                        f"{NAME} returned {len(batch.embeddings)} embeddings for {len(chunk)} inputs",
                        provider=NAME,
                        upstream_code="malformed_response",
                        retryable=True,
                    )
                vectors.extend(tuple(entry.values) for entry in batch.embeddings)
        return EmbeddingResult(vectors=tuple(vectors), usage=NOT_REPORTED, provider=NAME, model=request.model)
