"""The exact response cache's key, what may be cached, and for how long (S12). Pure.

The key is a SHA-256 over (org, provider, model, the normalized request). Normalizing makes
requests that must get the same answer hash the same:

- canonical JSON: keys sorted, no insignificant whitespace, integral floats as integers
  (``0.0`` and ``0``), ``None`` values dropped (absent and null mean the provider default);
- fields that do not change the answer are dropped: ``user``, ``metadata``, ``stream``,
  ``stream_options``, ``cache``, ``feature``;
- prompt texts (``content``, ``prompt``, ``input``, ``text``, ``system``, ``negative_prompt``)
  are NFC-normalized and stripped of leading and trailing whitespace; other strings, such as
  ``stop`` sequences, are kept exactly.

Hash the request as the provider will get it: after template rendering and redaction.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CacheKind = Literal["chat", "completion", "embedding", "image"]

HOUR = 3600
DAY = 24 * HOUR
DEFAULT_TTL_SECONDS: Mapping[CacheKind, int] = {
    "chat": HOUR,
    "completion": 7 * DAY,
    "embedding": 30 * DAY,
    "image": 90 * DAY,
}
MAX_TTL_SECONDS = 90 * DAY
"""The longest TTL a request may ask for; the bucket's lifecycle rule must keep entries this long."""

KEY_VERSION = "v1"
"""Part of every hash: changing the normalization changes it, so old entries are never misread."""

IGNORED_FIELDS = frozenset({"user", "metadata", "stream", "stream_options", "cache", "feature"})
_TEXT_FIELDS = frozenset({"content", "prompt", "input", "text", "system", "negative_prompt"})


class CacheOptions(BaseModel):
    """A request's ``cache: {skip, ttl}``. An explicit ``ttl`` also asks for a
    non-deterministic request to be cached."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    skip: bool = False
    ttl: int | None = Field(default=None, ge=1, le=MAX_TTL_SECONDS)


def _normalize(value: Any, *, text: bool = False) -> Any:
    if isinstance(value, Mapping):
        return {
            str(key): _normalize(item, text=str(key) in _TEXT_FIELDS)
            for key, item in value.items()
            if item is not None
        }
    if isinstance(value, list | tuple):
        return [_normalize(item, text=text) for item in value]
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip() if text else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def normalize_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request with the fields that do not affect the answer dropped and the rest in
    canonical form (see the module's docstring)."""
    normalized: dict[str, Any] = _normalize({k: v for k, v in request.items() if k not in IGNORED_FIELDS})
    return normalized


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cache_key(org_id: str, provider: str, model: str, request: Mapping[str, Any]) -> str:
    """The hex SHA-256 naming the cache entry of ``request`` for ``org_id`` on
    ``provider``/``model`` (``model`` without the provider prefix or with it, consistently)."""
    payload = canonical_json([KEY_VERSION, org_id, provider, model, normalize_request(request)])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cache_object_key(kind: CacheKind, org_id: str, digest: str) -> str:
    """Where the entry lives in the bucket: one prefix per kind, so a lifecycle rule per
    prefix can expire each kind after its longest TTL."""
    return f"cache/{kind}/{org_id}/{digest[:2]}/{digest}.json"


def _sampling(request: Mapping[str, Any], name: str) -> Any:
    if request.get(name) is not None:
        return request[name]
    params = request.get("params")
    return params.get(name) if isinstance(params, Mapping) else None


def is_cacheable(
    kind: CacheKind,
    request: Mapping[str, Any],
    options: CacheOptions | None = None,
    *,
    deterministic_model: bool = False,
) -> bool:
    """Whether the answer to ``request`` may be stored and reused.

    Never with ``cache.skip``. Embeddings and images always (an embedding is deterministic;
    an image is reused on purpose, S7). A chat or completion only when it is deterministic: a
    temperature of 0, a seed, or a model that always answers the same (the mock); with a
    temperature above 0 (or none, the provider default being 1) and no seed, only when the
    request asked for caching with an explicit ``cache.ttl``.
    """
    options = options or CacheOptions()
    if options.skip:
        return False
    if kind in ("embedding", "image") or deterministic_model:
        return True
    temperature = _sampling(request, "temperature")
    if _sampling(request, "seed") is not None or temperature == 0:
        return True
    return options.ttl is not None


def cache_ttl(kind: CacheKind, options: CacheOptions | None = None) -> int:
    """Seconds an entry lives: the request's ``cache.ttl``, else the default of its kind."""
    if options is not None and options.ttl is not None:
        return options.ttl
    return DEFAULT_TTL_SECONDS[kind]


# -- images (S7): the prompt hash and the context hash that deduplicate assets within an org ------


def _image_shape(model: str, size: str, quality: str | None, style: str | None, n: int) -> dict[str, Any]:
    return {"model": model, "size": size, "quality": quality, "style": style, "n": n}


def image_prompt_hash(
    org_id: str,
    provider: str,
    model: str,
    prompt: str,
    *,
    size: str,
    quality: str | None,
    style: str | None,
    n: int = 1,
    negative_prompt: str | None = None,
    seed: int | None = None,
) -> str:
    """The hash under which an org's image is found again: the prompt as the provider gets it
    (NFC, whitespace runs as one space, trimmed) with what shapes the image (model or alias,
    size, quality, style, n, negative prompt, seed). ``provider`` is that of the first model
    of the chain, so a newly configured provider is not served an older provider's images."""
    return cache_key(
        org_id,
        provider,
        model,
        {
            "kind": "image_prompt",
            "prompt": " ".join(prompt.split()),
            "negative_prompt": " ".join(negative_prompt.split()) if negative_prompt else None,
            "seed": seed,
            **_image_shape(model, size, quality, style, n),
        },
    )


def image_context_hash(
    org_id: str,
    provider: str,
    model: str,
    context: Mapping[str, Any],
    *,
    size: str,
    quality: str | None,
    style: str | None,
    n: int = 1,
) -> str:
    """The hash of a request's ``context`` object (what the image is for, whatever its
    prompt's wording): an image made for the same context, of the same shape, is reused."""
    return cache_key(
        org_id,
        provider,
        model,
        {"kind": "image_context", "context": dict(context), **_image_shape(model, size, quality, style, n)},
    )
