"""Signatures of payment webhooks: HMAC-SHA256 over ``<timestamp>.<raw body>``.

The payment provider sends::

    Tollgate-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

where ``v1`` is ``hex(HMAC-SHA256(secret, f"{t}." + raw_body))``. A header may carry several
``v1`` entries (while a secret is being rotated); one match is enough. The timestamp must be
within ``tolerance`` seconds of now, which bounds replays; a replay within the window is
harmless because every transition is idempotent on the event id.

Comparison is constant time (``hmac.compare_digest``) and nothing about the expected
signature is revealed in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from tollgate.errors import Unauthorized

SIGNATURE_HEADER = "Tollgate-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
_MAX_HEADER_LENGTH = 2048
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


class InvalidSignature(Unauthorized):
    """The webhook's signature is missing, malformed, wrong or too old (401)."""


def compute_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``hex(HMAC-SHA256(secret, b"<timestamp>." + body))``."""
    return hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The header value a sender puts on ``body`` at ``timestamp`` (tests, docs, tooling)."""
    return f"t={timestamp},{SCHEME}={compute_signature(secret, timestamp, body)}"


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_HEADER_LENGTH:
        raise InvalidSignature(f"The {SIGNATURE_HEADER} header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"Malformed {SIGNATURE_HEADER} header")
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.match(value):
                raise InvalidSignature(f"Malformed timestamp in the {SIGNATURE_HEADER} header")
            timestamp = int(value)
        elif name == SCHEME and _HEX_SIGNATURE.match(value):
            signatures.append(value)
        # other schemes are ignored, as a newer sender may add them
    if timestamp is None or not signatures:
        raise InvalidSignature(f"The {SIGNATURE_HEADER} header needs t=<unix time> and {SCHEME}=<hex>")
    return timestamp, signatures


def verify_signature(
    header: str | None,
    body: bytes,
    secrets: Sequence[bytes],
    now: int,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a webhook's signature; return its timestamp, or raise ``InvalidSignature``.

    ``secrets`` are the accepted signing secrets (the current one, and the previous one while
    rotating). The signature is checked before the timestamp, so a stale but authentic event
    is told apart from a forgery only by someone who can already sign.
    """
    if not header:
        raise InvalidSignature(f"Missing {SIGNATURE_HEADER} header")
    if not secrets:
        raise InvalidSignature("No webhook secret is configured")
    timestamp, candidates = _parse(header)
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, timestamp, body)
        for candidate in candidates:
            # Evaluate every pair: no early exit that would time the position of a match.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("The webhook signature does not match")
    if abs(now - timestamp) > tolerance_seconds:
        raise InvalidSignature(f"The webhook timestamp is more than {tolerance_seconds} s from now")
    return timestamp
