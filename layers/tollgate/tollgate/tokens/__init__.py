"""Token counting with tiktoken, from encoding files shipped in this package (S6).

tiktoken finds an encoding in ``TIKTOKEN_CACHE_DIR`` under the sha1 of its download URL. The
``tiktoken_cache/`` folder beside this file holds ``cl100k_base`` and ``o200k_base`` under those
names, so nothing is ever downloaded: in Lambda the template points ``TIKTOKEN_CACHE_DIR`` at
this folder inside the layer; elsewhere (tests, the local runtime) the first use points it here
when it is unset, and an encoding missing from a configured folder is read from here instead.
An encoding that is not shipped is an error, never a download.

Importing this module is cheap: tiktoken is imported on first use.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "DEFAULT_ENCODING",
    "SHIPPED_CACHE_DIR",
    "SHIPPED_ENCODINGS",
    "EncodingNotShippedError",
    "clear_cache",
    "count_tokens",
    "encoding_for",
    "encoding_name_for",
    "shipped_file",
]

SHIPPED_CACHE_DIR = Path(__file__).resolve().with_name("tiktoken_cache")
DEFAULT_ENCODING = "cl100k_base"
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

# The encodings shipped in SHIPPED_CACHE_DIR, with the sha256 tiktoken expects of each file.
SHIPPED_ENCODINGS: dict[str, str] = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# Model name prefixes (after any ``provider/``) that use o200k_base; tiktoken's own table is
# consulted first, this covers names it does not know yet.
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "o1", "o3", "o4")

_ENV = "TIKTOKEN_CACHE_DIR"
_env_lock = threading.Lock()


class EncodingNotShippedError(LookupError):
    """The encoding's file is not in the shipped cache (and Tollgate never downloads one)."""


def shipped_file(encoding_name: str, directory: Path = SHIPPED_CACHE_DIR) -> Path:
    """Where tiktoken looks for ``encoding_name`` in ``directory`` (sha1 of its blob URL)."""
    url = _BLOB_URL.format(name=encoding_name)
    return directory / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


def encoding_name_for(model_or_encoding: str) -> str:
    """The shipped encoding for a model (``openai/gpt-4o-mini``, ``gpt-4o``, ``mock/chat``) or
    an encoding name. gpt-4o-family models get ``o200k_base``; every other model, including
    non-OpenAI ones whose tokenizer is not public, gets ``cl100k_base`` as an estimate. An
    encoding name that is not shipped (``p50k_base``) raises ``EncodingNotShippedError``."""
    if model_or_encoding in SHIPPED_ENCODINGS:
        return model_or_encoding
    import tiktoken
    from tiktoken.model import encoding_name_for_model

    if model_or_encoding in tiktoken.list_encoding_names():
        raise EncodingNotShippedError(
            f"tiktoken encoding {model_or_encoding!r} is not shipped (shipped: {sorted(SHIPPED_ENCODINGS)})"
        )
    model = model_or_encoding.rsplit("/", 1)[-1].strip().lower()

    try:
        name = encoding_name_for_model(model)
    except KeyError:
        name = ""
    if name in SHIPPED_ENCODINGS:
        return name
    if model.startswith(_O200K_PREFIXES):
        return "o200k_base"
    return DEFAULT_ENCODING


def _cache_dir_for(encoding_name: str) -> Path:
    """The folder tiktoken must read ``encoding_name`` from; sets TIKTOKEN_CACHE_DIR if unset."""
    configured = os.environ.get(_ENV)
    if not configured:
        os.environ[_ENV] = str(SHIPPED_CACHE_DIR)
        configured = str(SHIPPED_CACHE_DIR)
    for directory in (Path(configured), SHIPPED_CACHE_DIR):
        if shipped_file(encoding_name, directory).is_file():
            return directory
    raise EncodingNotShippedError(
        f"tiktoken encoding {encoding_name!r} is not in {configured} nor in {SHIPPED_CACHE_DIR}"
    )


@cache
def _load(encoding_name: str) -> tiktoken.Encoding:
    if encoding_name not in SHIPPED_ENCODINGS:
        raise EncodingNotShippedError(
            f"tiktoken encoding {encoding_name!r} is not shipped (shipped: {sorted(SHIPPED_ENCODINGS)})"
        )
    import tiktoken

    directory = _cache_dir_for(encoding_name)
    # tiktoken reads TIKTOKEN_CACHE_DIR at load time. When the configured folder lacks the file
    # (the template's /opt path outside Lambda), point it at the shipped one for this load only.
    with _env_lock:
        previous = os.environ.get(_ENV)
        os.environ[_ENV] = str(directory)
        try:
            return tiktoken.get_encoding(encoding_name)
        finally:
            if previous is None:
                os.environ.pop(_ENV, None)
            else:
                os.environ[_ENV] = previous


def encoding_for(model_or_encoding: str) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` for a model or encoding name, loaded once per process from the
    shipped files. Raises ``EncodingNotShippedError`` rather than download anything."""
    return _load(encoding_name_for(model_or_encoding))


def clear_cache() -> None:
    """Forget the loaded encodings (tests that load them under different conditions)."""
    _load.cache_clear()


def count_tokens(text: str, model_or_encoding: str = DEFAULT_ENCODING) -> int:
    """How many tokens ``text`` is for a model or encoding. Special-token markers in the text
    (``<|endoftext|>``) count as ordinary text: a prompt cannot smuggle control tokens in."""
    return len(encoding_for(model_or_encoding).encode_ordinary(text))
