"""The API key format, its checksum, and how keys are hashed for storage.

A key looks like ``tg_<kid>_<secret><checksum>``:

- ``kid``: 12 base62 characters; ``key_<kid>`` is the key's public id, so a lookup is one
  strongly consistent read by id, never a scan;
- ``secret``: 32 base62 characters (about 190 bits) from ``secrets``;
- ``checksum``: 6 base62 characters of CRC32 over everything before it, so a mistyped or
  truncated key is refused before any lookup.

Only ``HMAC-SHA256(pepper, key)`` is stored. The pepper is a server-side secret, so a copy of
the table alone cannot be used to test guesses.
"""

from __future__ import annotations

import hmac
import re
import secrets
import zlib
from hashlib import sha256

from msgspec import Struct

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KID_LEN = 12
_SECRET_LEN = 32
_CHECKSUM_LEN = 6
KEY_PREFIX = "tg_"
_KEY_PATTERN = re.compile(
    rf"^tg_([0-9A-Za-z]{{{_KID_LEN}}})_([0-9A-Za-z]{{{_SECRET_LEN}}})([0-9A-Za-z]{{{_CHECKSUM_LEN}}})$"
)
_KEY_ID_PATTERN = re.compile(rf"^key_[0-9A-Za-z]{{{_KID_LEN}}}$")


class MalformedKey(ValueError):
    """The text is not a Tollgate API key (shape or checksum)."""


def _base62(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 62)
        chars.append(_BASE62[rem])
    return "".join(reversed(chars))


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LEN)


class PlainKey(Struct, frozen=True):
    """A key as the client holds it. Exists in memory only, and is shown once."""

    value: str
    key_id: str

    @property
    def hint(self) -> str:
        """What may be displayed later: the prefix with the id, and the last 4 characters."""
        return f"{self.value[: len(KEY_PREFIX) + _KID_LEN]}...{self.value[-4:]}"


def generate_key() -> PlainKey:
    kid = _random_base62(_KID_LEN)
    body = f"{KEY_PREFIX}{kid}_{_random_base62(_SECRET_LEN)}"
    return PlainKey(value=body + _checksum(body), key_id=f"key_{kid}")


def parse_key(text: str) -> PlainKey:
    """Check the shape and checksum of a presented key; raises ``MalformedKey``."""
    match = _KEY_PATTERN.match(text)
    if match is None:
        raise MalformedKey("not a Tollgate API key")
    body = text[:-_CHECKSUM_LEN]
    if not hmac.compare_digest(_checksum(body), match.group(3)):
        raise MalformedKey("API key checksum does not match")
    return PlainKey(value=text, key_id=f"key_{match.group(1)}")


def is_valid_key_id(value: str) -> bool:
    return bool(_KEY_ID_PATTERN.match(value))


class KeyHasher:
    """HMAC-SHA256 with the server-side pepper: the only form in which a key is stored."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 16:
            raise ValueError("the key pepper must be at least 16 bytes")
        self._pepper = pepper

    def hash(self, key: PlainKey) -> str:
        return hmac.new(self._pepper, key.value.encode("ascii"), sha256).hexdigest()

    def matches(self, key: PlainKey, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(key), stored_hash)
