"""Token counting loads tiktoken's encodings from the files shipped in the layer, never from the
network (S6)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import tiktoken
import tiktoken.load
import tiktoken.registry

from tollgate import tokens

TEMPLATE_CACHE_DIR = "/opt/python/tollgate/tokens/tiktoken_cache"


def _tiktoken_blobs() -> dict[str, tuple[str, str]]:
    """(url, expected sha256) of every encoding file in tiktoken's own registry source."""
    source = inspect.getsource(importlib.import_module("tiktoken_ext.openai_public"))
    pairs = re.findall(r'"(https://[^"]+/(\w+)\.tiktoken)",\s*expected_hash="([0-9a-f]{64})"', source)
    return {name: (url, sha256) for url, name, sha256 in pairs}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """No network, no encoding already in memory; yields the URLs tiktoken tried to fetch."""
    fetched: list[str] = []
    real_read_file = tiktoken.load.read_file

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network is unreachable in this test")

    def read_file(blobpath: str) -> bytes:
        if "://" in blobpath:
            fetched.append(blobpath)
        return real_read_file(blobpath)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file", read_file)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    tokens.clear_cache()
    yield fetched
    tokens.clear_cache()


@pytest.mark.parametrize("name", sorted(tokens.SHIPPED_ENCODINGS))
def test_shipped_files_are_the_ones_tiktoken_expects(name: str) -> None:
    # Given tiktoken's own URL and hash for the encoding
    url, expected_sha256 = _tiktoken_blobs()[name]

    # When we look at the shipped file
    path = tokens.SHIPPED_CACHE_DIR / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()

    # Then it sits under tiktoken's cache name, with tiktoken's expected content
    assert path == tokens.shipped_file(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected_sha256
    assert tokens.SHIPPED_ENCODINGS[name] == expected_sha256


def test_every_shipped_file_is_a_known_encoding() -> None:
    expected = {tokens.shipped_file(name).name for name in tokens.SHIPPED_ENCODINGS}
    assert {p.name for p in tokens.SHIPPED_CACHE_DIR.iterdir() if not p.name.startswith(".")} == expected


@pytest.mark.parametrize(
    ("encoding", "text", "ids"),
    [
        ("cl100k_base", "hello world", [15339, 1917]),
        ("cl100k_base", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
        ("o200k_base", "hello world", [24912, 2375]),
        ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ],
)
def test_counts_offline_from_shipped_files(
    offline: list[str], encoding: str, text: str, ids: list[int]
) -> None:
    # Given no network and TIKTOKEN_CACHE_DIR unset
    # When tokens are counted
    count = tokens.count_tokens(text, encoding)

    # Then the encoding came from the shipped files, and counts as tiktoken's reference does
    assert count == len(ids)
    assert tokens.encoding_for(encoding).encode(text) == ids
    assert offline == []
    assert Path(os.environ["TIKTOKEN_CACHE_DIR"]) == tokens.SHIPPED_CACHE_DIR


@pytest.mark.parametrize("configured", [TEMPLATE_CACHE_DIR, "empty"])
def test_a_configured_folder_without_the_file_falls_back_to_the_shipped_one(
    offline: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, configured: str
) -> None:
    # Given TIKTOKEN_CACHE_DIR names a folder without the encodings (the Lambda path, locally)
    folder = str(tmp_path) if configured == "empty" else configured
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", folder)

    # When tokens are counted
    count = tokens.count_tokens("hello world", "cl100k_base")

    # Then they load from the shipped files, nothing is fetched and the setting is left as it was
    assert count == 2
    assert offline == []
    assert os.environ["TIKTOKEN_CACHE_DIR"] == folder
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("openai/gpt-4o", "o200k_base"),
        ("openai/gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("openai/gpt-4.1-nano", "o200k_base"),
        ("openai/o3-mini", "o200k_base"),
        ("openai/gpt-5", "o200k_base"),
        ("openai/gpt-4", "cl100k_base"),
        ("openai/gpt-3.5-turbo", "cl100k_base"),
        ("openai/text-embedding-3-small", "cl100k_base"),
        ("mock/chat", "cl100k_base"),
        ("anthropic/claude-3-5-sonnet", "cl100k_base"),
        ("ollama/llama3", "cl100k_base"),
        ("davinci", "cl100k_base"),
        ("o200k_base", "o200k_base"),
        ("cl100k_base", "cl100k_base"),
    ],
)
def test_encoding_name_for_model(model: str, encoding: str) -> None:
    assert tokens.encoding_name_for(model) == encoding


def test_an_encoding_that_is_not_shipped_is_refused_not_downloaded(offline: list[str]) -> None:
    with pytest.raises(tokens.EncodingNotShippedError, match="p50k_base"):
        tokens.count_tokens("hello", "p50k_base")
    assert offline == []


def test_encodings_are_loaded_once_per_process(offline: list[str]) -> None:
    assert tokens.encoding_for("openai/gpt-4o-mini") is tokens.encoding_for("o200k_base")
    assert tokens.encoding_for("mock/chat") is tokens.encoding_for("cl100k_base")


def test_special_token_markers_count_as_text(offline: list[str]) -> None:
    # A prompt containing "<|endoftext|>" is counted, not refused, and not one control token.
    assert tokens.count_tokens("<|endoftext|>", "cl100k_base") > 1
    assert tokens.count_tokens("", "o200k_base") == 0
