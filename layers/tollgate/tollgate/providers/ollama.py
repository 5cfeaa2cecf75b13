"""Ollama: ``POST /api/chat`` (``stream: false``) and ``POST /api/embed``.

Configured by its base URL (``OLLAMA_BASE_URL`` locally, ``ollama_base_url`` in the AWS keys
secret); a local Ollama needs no key, but an ``ollama`` key, when present, is sent as a Bearer
token for an Ollama behind an authenticating proxy. Usage is ``prompt_eval_count`` and
``eval_count``; errors are ``{"error": "..."}``.
"""

from __future__ import annotations

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
    Kind,
    ProviderBase,
    Usage,
)
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError
from tollgate.providers.http import ProviderHttp, WireModel, json_error_message, parse_body, text_snippet
from tollgate.providers.keys import OLLAMA_BASE_URL, ProviderKeySource

NAME = "ollama"

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class _Message(WireModel):
    content: str = ""


class _ChatResponse(WireModel):
    model: str
    message: _Message
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None


class _EmbedResponse(WireModel):
    model: str
    embeddings: list[list[float]] = Field(default_factory=list)
    prompt_eval_count: int | None = None


def ollama_error(response: httpx.Response) -> tuple[str, str | None]:
    """(message, None) from an Ollama ``{"error": "..."}`` body."""
    body = json_error_message(response)
    if isinstance(body, dict) and "error" in body:
        return str(body["error"]), None
    return text_snippet(response), None


class OllamaProvider(ProviderBase):
    name = NAME
    kinds: frozenset[Kind] = frozenset({"chat", "embedding"})

    def __init__(self, http: ProviderHttp, keys: ProviderKeySource) -> None:
        self._http = http
        self._keys = keys

    def is_configured(self) -> bool:
        return self._keys.key_for(OLLAMA_BASE_URL) is not None

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        base_url = self._keys.key_for(OLLAMA_BASE_URL)
        if base_url is None:
            raise ProviderNotConfigured(NAME)
        headers = {"Accept": "application/json"}
        token = self._keys.key_for(NAME)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self._http.post(
            NAME,
            f"{base_url.rstrip('/')}{path}",
            headers=headers,
            json_body=body,
            read_timeout=self._http.timeouts.chat,
            error_parser=ollama_error,
        )

    def chat(self, request: ChatRequest) -> ChatResult:
        """``POST /api/chat`` with ``stream: false``; limits and sampling go in ``options``."""
        options = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "num_predict": request.max_tokens,
            "stop": list(request.stop) or None,
        }
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": False,
        }
        options = {name: value for name, value in options.items() if value is not None}
        if options:
            body["options"] = options
        answer = parse_body(NAME, self._post("/api/chat", body), _ChatResponse)
        return ChatResult(
            text=answer.message.content,
            finish_reason=_FINISH.get(answer.done_reason or "", "other"),
            usage=Usage(answer.prompt_eval_count, answer.eval_count),
            provider=NAME,
            model=answer.model,
            raw_finish_reason=answer.done_reason,
        )

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """``POST /api/embed`` with every input in one call."""
        body: dict[str, Any] = {"model": request.model, "input": list(request.inputs)}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        answer = parse_body(NAME, self._post("/api/embed", body), _EmbedResponse)
        if len(answer.embeddings) != len(request.inputs):
            raise UpstreamError(
                f"{NAME} returned {len(answer.embeddings)} embeddings for {len(request.inputs)} inputs",
                provider=NAME,
                upstream_code="malformed_response",
                retryable=True,
            )
        tokens = answer.prompt_eval_count
        return EmbeddingResult(
            vectors=tuple(tuple(vector) for vector in answer.embeddings),
            usage=Usage(tokens, 0) if tokens is not None else NOT_REPORTED,
            provider=NAME,
            model=answer.model,
        )
