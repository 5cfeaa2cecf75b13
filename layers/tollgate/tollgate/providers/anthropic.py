"""Anthropic: ``POST /v1/messages``.

Auth is ``x-api-key`` with an ``anthropic-version`` header. The system prompt is a top-level
``system`` field, not a message; ``max_tokens`` is required. Errors are
``{"type": "error", "error": {"type", "message"}}``; 529 (``overloaded_error``) is retried like
any 5xx.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import Field

from tollgate.providers.base import (
    ChatRequest,
    ChatResult,
    FinishReason,
    Kind,
    ProviderBase,
    Usage,
    split_system,
)
from tollgate.providers.errors import ProviderNotConfigured
from tollgate.providers.http import ProviderHttp, WireModel, json_error_message, parse_body, text_snippet
from tollgate.providers.keys import ProviderKeySource

NAME = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""Sent when the request names no limit (Anthropic requires one)."""

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class _Block(WireModel):
    type: str
    text: str | None = None


class _Usage(WireModel):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _MessageResponse(WireModel):
    id: str | None = None
    model: str
    content: list[_Block] = Field(default_factory=list)
    stop_reason: str | None = None
    usage: _Usage | None = None


def anthropic_error(response: httpx.Response) -> tuple[str, str | None]:
    """(message, error type) from an Anthropic error body."""
    body = json_error_message(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        kind = error.get("type")
        return str(error.get("message") or ""), str(kind) if kind else None
    return text_snippet(response), None


class AnthropicProvider(ProviderBase):
    name = NAME
    kinds: frozenset[Kind] = frozenset({"chat"})

    def __init__(self, http: ProviderHttp, keys: ProviderKeySource, base_url: str = DEFAULT_BASE_URL) -> None:
        self._http = http
        self._keys = keys
        self._base_url = base_url.rstrip("/")

    def is_configured(self) -> bool:
        return self._keys.key_for(NAME) is not None

    def chat(self, request: ChatRequest) -> ChatResult:
        """``POST /v1/messages``. Temperatures above Anthropic's maximum of 1 are sent as 1."""
        key = self._keys.key_for(NAME)
        if key is None:
            raise ProviderNotConfigured(NAME)
        system, turns = split_system(request.messages)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [{"role": m.role, "content": m.content} for m in turns],
        }
        if system is not None:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.user:
            body["metadata"] = {"user_id": request.user}
        response = self._http.post(
            NAME,
            f"{self._base_url}/v1/messages",
            headers={"x-api-key": key, "anthropic-version": API_VERSION, "Accept": "application/json"},
            json_body=body,
            read_timeout=self._http.timeouts.chat,
            error_parser=anthropic_error,
        )
        answer = parse_body(NAME, response, _MessageResponse)
        usage = answer.usage
        input_tokens = None
        if usage is not None and usage.input_tokens is not None:
            # Cached prompt reads and writes are input too (and billed).
            input_tokens = (
                usage.input_tokens
                + (usage.cache_creation_input_tokens or 0)
                + (usage.cache_read_input_tokens or 0)
            )
        return ChatResult(
            text="".join(block.text or "" for block in answer.content if block.type == "text"),
            finish_reason=_FINISH.get(answer.stop_reason or "", "other"),
            usage=Usage(input_tokens, usage.output_tokens if usage else None),
            provider=NAME,
            model=answer.model,
            response_id=answer.id,
            raw_finish_reason=answer.stop_reason,
        )
