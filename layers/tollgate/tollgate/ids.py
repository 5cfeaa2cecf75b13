"""Identifiers: a short prefix naming the kind, then a sortable random part (ULID-like)."""

from __future__ import annotations

import re
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_PATTERN = re.compile(r"^[a-z]{2,8}_[0-9a-hjkmnp-tv-z]{26}$")


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id such as ``org_01jd...``: 48 bits of milliseconds then 80 random bits."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def is_valid_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of an id of this kind (checked before any lookup)."""
    return value.startswith(prefix + "_") and bool(_ID_PATTERN.match(value))
