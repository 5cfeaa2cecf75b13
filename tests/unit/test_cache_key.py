"""The exact cache's key, what is cacheable, and TTLs by kind (S12)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollgate.generation.cache_key import (
    DAY,
    HOUR,
    CacheOptions,
    cache_key,
    cache_object_key,
    cache_ttl,
    canonical_json,
    is_cacheable,
    normalize_request,
)
from tollgate.generation.requests import ChatCompletionRequest, EmbeddingsRequest

CHAT = {
    "model": "mock/chat",
    "messages": [{"role": "user", "content": "Hello there"}],
    "temperature": 0,
    "max_tokens": 50,
}


def _key(request: dict[str, object], org: str = "org_1", provider: str = "mock", model: str = "chat") -> str:
    return cache_key(org, provider, model, request)


def test_key_order_and_json_formatting_do_not_matter() -> None:
    reordered = {
        "max_tokens": 50,
        "temperature": 0.0,
        "messages": [{"content": "Hello there", "role": "user"}],
        "model": "mock/chat",
    }
    assert _key(CHAT) == _key(reordered)
    assert len(_key(CHAT)) == 64


def test_fields_that_do_not_change_the_answer_are_ignored() -> None:
    noisy = CHAT | {
        "user": "alice",
        "metadata": {"trace": "abc"},
        "stream": False,
        "cache": {"ttl": 60},
        "feature": "chat",
        "seed": None,
    }
    assert _key(noisy) == _key(CHAT)


def test_prompt_whitespace_at_the_edges_is_ignored_but_stop_sequences_are_exact() -> None:
    padded = CHAT | {"messages": [{"role": "user", "content": "  Hello there\n"}]}
    assert _key(padded) == _key(CHAT)
    assert _key(CHAT | {"stop": ["\n"]}) != _key(CHAT | {"stop": [" "]})


def test_what_changes_the_answer_changes_the_key() -> None:
    base = _key(CHAT)
    assert _key(CHAT | {"messages": [{"role": "user", "content": "Hello there!"}]}) != base
    assert _key(CHAT | {"max_tokens": 51}) != base
    assert _key(CHAT | {"temperature": 0.5}) != base
    assert _key(CHAT, org="org_2") != base
    assert _key(CHAT, provider="openai") != base
    assert _key(CHAT, model="chat-2") != base


def test_unicode_is_normalized_in_prompts() -> None:
    composed = CHAT | {"messages": [{"role": "user", "content": "caf\u00e9"}]}
    decomposed = CHAT | {"messages": [{"role": "user", "content": "cafe\u0301"}]}
    assert _key(composed) == _key(decomposed)


def test_normalized_request_and_canonical_json() -> None:
    normalized = normalize_request({"b": 1.0, "a": None, "user": "x", "input": [" x "], "n": 2})
    assert normalized == {"b": 1, "input": ["x"], "n": 2}
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


def test_request_models_give_the_same_key_for_the_same_meaning() -> None:
    first = ChatCompletionRequest.model_validate(CHAT | {"user": "a"})
    second = ChatCompletionRequest.model_validate(CHAT | {"metadata": {"x": 1}})
    assert _key(first.cache_payload()) == _key(second.cache_payload())
    floats = EmbeddingsRequest.model_validate(
        {"model": "mock/embed", "input": "hi", "encoding_format": "float"}
    )
    b64 = EmbeddingsRequest.model_validate(
        {"model": "mock/embed", "input": "hi", "encoding_format": "base64"}
    )
    assert _key(floats.cache_payload()) == _key(b64.cache_payload())


@pytest.mark.parametrize(
    ("kind", "request_body", "options", "deterministic", "expected"),
    [
        ("chat", {"temperature": 0}, None, False, True),
        ("chat", {"temperature": 0.7, "seed": 3}, None, False, True),
        ("chat", {"temperature": 0.7}, None, False, False),
        ("chat", {}, None, False, False),  # the provider default temperature is 1
        ("chat", {"temperature": 0.7}, CacheOptions(ttl=600), False, True),  # asked for
        ("chat", {"temperature": 0.7}, None, True, True),  # the mock always answers the same
        ("completion", {"params": {"temperature": 0}}, None, False, True),
        ("completion", {"params": {"temperature": 1}}, None, False, False),
        ("embedding", {}, None, False, True),
        ("image", {}, None, False, True),
        ("chat", {"temperature": 0}, CacheOptions(skip=True), False, False),
        ("embedding", {}, CacheOptions(skip=True), False, False),
    ],
)
def test_is_cacheable(
    kind: str,
    request_body: dict[str, object],
    options: CacheOptions | None,
    deterministic: bool,
    expected: bool,
) -> None:
    assert is_cacheable(kind, request_body, options, deterministic_model=deterministic) is expected  # type: ignore[arg-type]


def test_ttls_by_kind_and_per_request() -> None:
    assert cache_ttl("chat") == HOUR
    assert cache_ttl("completion") == 7 * DAY
    assert cache_ttl("embedding") == 30 * DAY
    assert cache_ttl("image") == 90 * DAY
    assert cache_ttl("image", CacheOptions(ttl=60)) == 60
    assert cache_ttl("chat", CacheOptions(skip=False)) == HOUR


def test_a_ttl_is_bounded() -> None:
    with pytest.raises(ValidationError):
        CacheOptions(ttl=0)
    with pytest.raises(ValidationError):
        CacheOptions(ttl=91 * DAY)
    with pytest.raises(ValidationError):
        CacheOptions.model_validate({"skip": True, "forever": True})


def test_the_object_key_has_a_prefix_per_kind() -> None:
    digest = _key(CHAT)
    assert cache_object_key("chat", "org_1", digest) == f"cache/chat/org_1/{digest[:2]}/{digest}.json"
