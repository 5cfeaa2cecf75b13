"""The ``mock`` provider: real and deterministic, so the whole gateway runs without an AI (S6).

- ``mock/chat`` answers from the prompt: the same messages (and seed) always give the same
  answer, a readable sentence derived from a SHA-256 of the conversation that quotes the start
  of the last user message. ``max_tokens`` and ``stop`` are honoured; usage is counted with
  tiktoken, the way OpenAI counts a chat.
- ``mock/embed`` returns a unit vector (feature hashing of the words, so texts sharing words
  are closer) of ``dimensions`` (default 256, ``MOCK_EMBEDDING_DIMENSIONS``).
- ``mock/image`` draws a PNG of exactly the requested size: a vertical gradient and a few
  circles and bars whose colours and places come from a hash of the prompt.

Request metadata steers it for tests: ``{"mock": {"fail": "error" | "timeout" | "rate_limit"
| "invalid", "delay_ms": 50}}`` (or the same object as a JSON string, for clients whose
metadata values must be strings).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tollgate.errors import FieldError, ValidationFailed
from tollgate.providers.base import (
    NOT_REPORTED,
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
    ProviderBase,
    Usage,
)
from tollgate.providers.errors import UpstreamError, UpstreamTimeout
from tollgate.providers.imaging import encode_png
from tollgate.tokens import count_tokens, encoding_for

NAME = "mock"
DEFAULT_DIMENSIONS = 256
MAX_DELAY_MS = 10_000
_ENCODING = "cl100k_base"

_ADJECTIVES = (
    "bold", "brisk", "calm", "deft", "fresh", "frank", "gentle", "hardy", "keen", "lucid",
    "mellow", "nimble", "plain", "quiet", "rapid", "steady", "tidy", "vivid", "warm", "zesty",
)  # fmt: skip
_NOUNS = (
    "anchor", "bridge", "candle", "delta", "ember", "forest", "garden", "harbor", "island",
    "lantern", "meadow", "needle", "orbit", "pebble", "quarry", "river", "signal", "tunnel",
    "valley", "window",
)  # fmt: skip
_TEMPLATES = (
    "In short: a {a1} {n1} beside a {a2} {n2}, and the {n3} keeps it {a3}.",
    "Think of a {a1} {n1}: follow the {n2} to the {a2} {n3}.",
    "The {a1} answer is the {n1}; the {n2} and the {a2} {n3} only frame it.",
    "Start from the {n1}, stay {a1}, and let the {a2} {n2} lead to the {n3}.",
)


class MockKnobs(BaseModel):
    """What ``metadata.mock`` may ask of the mock provider."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    fail: Literal["error", "timeout", "rate_limit", "invalid"] | None = None
    delay_ms: int = Field(default=0, ge=0, le=MAX_DELAY_MS)


def mock_knobs(metadata: Mapping[str, Any]) -> MockKnobs:
    """The knobs in ``metadata["mock"]`` (an object or its JSON text); none when absent."""
    raw = metadata.get("mock")
    if raw is None:
        return MockKnobs()
    try:
        if isinstance(raw, str):
            return MockKnobs.model_validate_json(raw)
        return MockKnobs.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'mock'}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationFailed([FieldError("metadata.mock", problems)]) from exc


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()).digest()


def _topic(messages: tuple[ChatMessage, ...]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            words = message.content.split()
            topic = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
            return topic if len(topic) <= 80 else topic[:77].rstrip() + "..."
    return "(no question)"


def mock_answer(messages: tuple[ChatMessage, ...], seed: int | None = None) -> str:
    """The full answer of ``mock/chat`` to a conversation (before ``max_tokens``/``stop``)."""
    digest = _digest([[m.role, m.content, m.name] for m in messages], seed)
    words = {f"a{i}": _ADJECTIVES[digest[i] % len(_ADJECTIVES)] for i in (1, 2, 3)}
    words |= {f"n{i}": _NOUNS[digest[3 + i] % len(_NOUNS)] for i in (1, 2, 3)}
    sentence = _TEMPLATES[digest[0] % len(_TEMPLATES)].format(**words)
    return f'Mock answer {digest.hex()[:8]} to "{_topic(messages)}". {sentence}'


def chat_input_tokens(messages: tuple[ChatMessage, ...], encoding: str = _ENCODING) -> int:
    """Prompt tokens the way OpenAI counts a chat: 3 per message, its role and content, 1 for a
    name, and 3 to prime the reply."""
    total = 3
    for message in messages:
        total += 3 + count_tokens(message.role, encoding) + count_tokens(message.content, encoding)
        if message.name:
            total += 1 + count_tokens(message.name, encoding)
    return total


def _truncate(text: str, max_tokens: int | None, stop: tuple[str, ...]) -> tuple[str, FinishReason]:
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        return text[: min(cuts)], "stop"
    if max_tokens is not None:
        encoding = encoding_for(_ENCODING)
        tokens = encoding.encode_ordinary(text)
        if len(tokens) > max_tokens:
            return str(encoding.decode(tokens[:max_tokens])), "length"
    return text, "stop"


def mock_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> tuple[float, ...]:
    """A deterministic unit vector for ``text``: each lower-cased word adds +-1 at a hashed
    position; a small hash-derived base keeps an empty text a unit vector too."""
    vector = [0.0] * dimensions
    base = hashlib.shake_256(text.encode("utf-8")).digest(dimensions)
    for index, byte in enumerate(base):
        vector[index] = (byte - 127.5) / 1275.0
    for word in re.findall(r"\w+", text.lower()):
        h = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        position = int.from_bytes(h[:4], "big") % dimensions
        vector[position] += 1.0 if h[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return tuple(value / norm for value in vector)


def _rgb(stream: bytes, at: int) -> bytes:
    return bytes(stream[at : at + 3])


def mock_png(prompt: str, width: int, height: int, variant: int = 0) -> bytes:
    """The PNG ``mock/image`` draws for ``prompt`` (``variant`` tells the n images apart)."""
    stream = hashlib.shake_256(f"{variant}:{prompt}".encode()).digest(128)
    top, bottom = _rgb(stream, 0), _rgb(stream, 3)
    shapes: list[tuple[str, int, int, int, int, bytes]] = []
    count = 3 + stream[6] % 4
    for index in range(count):
        at = 8 + index * 9
        color = _rgb(stream, at)
        x = stream[at + 3] * width // 256
        y = stream[at + 4] * height // 256
        if stream[at + 5] % 3:
            radius = max(1, (8 + stream[at + 6] % 24) * min(width, height) // 100)
            shapes.append(("circle", x, y, radius, 0, color))
        else:
            bar_w = max(1, (10 + stream[at + 6] % 40) * width // 100)
            bar_h = max(1, (3 + stream[at + 7] % 10) * height // 100)
            shapes.append(("bar", x, y, bar_w, bar_h, color))

    def rows() -> Iterator[bytes]:
        for row_index in range(height):
            t = row_index / (height - 1) if height > 1 else 0.0
            shade = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
            row = bytearray(shade * width)
            for kind, x, y, p, q, color in shapes:
                if kind == "circle":
                    dy = row_index - y
                    if abs(dy) > p:
                        continue
                    half = math.isqrt(p * p - dy * dy)
                    x0, x1 = max(0, x - half), min(width, x + half + 1)
                else:
                    if not y <= row_index < y + q:
                        continue
                    x0, x1 = x, min(width, x + p)
                if x1 > x0:
                    row[3 * x0 : 3 * x1] = color * (x1 - x0)
            yield bytes(row)

    return encode_png(width, height, rows())


class MockProvider(ProviderBase):
    """Always configured (unless the deployment turns it off, ``MOCK_PROVIDER_ENABLED``)."""

    name = NAME
    kinds: frozenset[Kind] = frozenset({"chat", "embedding", "image"})

    def __init__(
        self,
        *,
        enabled: bool = True,
        embedding_dimensions: int = DEFAULT_DIMENSIONS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._enabled = enabled
        self._dimensions = embedding_dimensions
        self._sleep = sleep

    def is_configured(self) -> bool:
        return self._enabled

    def _obey(self, metadata: Mapping[str, Any]) -> None:
        knobs = mock_knobs(metadata)
        if knobs.delay_ms:
            self._sleep(knobs.delay_ms / 1000)
        if knobs.fail == "timeout":
            raise UpstreamTimeout(f"{NAME} timed out (asked by metadata.mock.fail)", provider=NAME)
        if knobs.fail is not None:
            status, code = {
                "error": (500, "mock_error"),
                "rate_limit": (429, "rate_limited"),
                "invalid": (400, "invalid"),
            }[knobs.fail]
            raise UpstreamError(
                f"{NAME} returned HTTP {status}: failure asked by metadata.mock.fail={knobs.fail}",
                provider=NAME,
                upstream_status=status,
                upstream_code=code,
                retryable=status != 400,
            )

    def chat(self, request: ChatRequest) -> ChatResult:
        """The deterministic answer; usage counted with tiktoken (``cl100k_base``)."""
        self._obey(request.metadata)
        text, finish = _truncate(
            mock_answer(request.messages, request.seed), request.max_tokens, request.stop
        )
        return ChatResult(
            text=text,
            finish_reason=finish,
            usage=Usage(chat_input_tokens(request.messages), count_tokens(text, _ENCODING)),
            provider=NAME,
            model=request.model,
            response_id="mock-" + _digest(text, [m.content for m in request.messages]).hex()[:24],
            raw_finish_reason=finish,
        )

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """One unit vector per input, of ``request.dimensions`` or the configured default."""
        self._obey(request.metadata)
        dimensions = request.dimensions or self._dimensions
        vectors = tuple(mock_embedding(text, dimensions) for text in request.inputs)
        tokens = sum(count_tokens(text, _ENCODING) for text in request.inputs)
        return EmbeddingResult(vectors=vectors, usage=Usage(tokens, 0), provider=NAME, model=request.model)

    def generate_images(self, request: ImageRequest) -> ImageResult:
        """``n`` PNGs of exactly ``width`` x ``height`` (the mock always answers PNG)."""
        self._obey(request.metadata)
        images = tuple(
            GeneratedImage(
                data=mock_png(request.prompt, request.width, request.height, variant),
                format="png",
                width=request.width,
                height=request.height,
                seed=int.from_bytes(_digest(request.prompt, variant)[:4], "big"),
            )
            for variant in range(request.n)
        )
        return ImageResult(images=images, usage=NOT_REPORTED, provider=NAME, model=request.model)
