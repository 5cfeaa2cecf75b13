"""HTML pages a function serves to browsers (the dashboard, S9), under a strict policy.

A page is one HTML document whose ``<style>`` and ``<script>`` elements are inline. Rather than
``'unsafe-inline'``, the ``Content-Security-Policy`` allows exactly those elements by their
SHA-256 hashes (computed from the file when first served) and nothing from any other origin:
no external script, style, font or image, API calls to the page's own origin only, no
framing, no forms posting elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from msgspec import Struct

from tollgate.api.rest import Response

_NONE = "'none'"
_INLINE = re.compile(r"<(script|style)(?:\s[^>]*)?>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_security_policy(html: str) -> str:
    """The policy that allows the page's own inline scripts and styles and nothing else."""
    scripts = [_hash(body) for kind, body in _INLINE.findall(html) if kind.lower() == "script"]
    styles = [_hash(body) for kind, body in _INLINE.findall(html) if kind.lower() == "style"]
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(scripts) or _NONE}",
            f"style-src {' '.join(styles) or _NONE}",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class _Loaded(Struct, frozen=True):
    html: str
    headers: Mapping[str, str]


class StaticPage:
    """An HTML file served as it is, with its security headers."""

    def __init__(self, path: Path, *, max_age_seconds: int = 300) -> None:
        self._path = path
        self._max_age = max_age_seconds
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def _load(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                html = self._path.read_text(encoding="utf-8")
                self._loaded = _Loaded(
                    html,
                    {
                        "Content-Security-Policy": content_security_policy(html),
                        "X-Content-Type-Options": "nosniff",
                        "Referrer-Policy": "no-referrer",
                        "X-Frame-Options": "DENY",
                        "Cache-Control": f"public, max-age={self._max_age}",
                    },
                )
            return self._loaded

    def response(self) -> Response[str]:
        """The page, ``200 text/html``."""
        page = self._load()
        return Response(
            status_code=200,
            content_type="text/html; charset=utf-8",
            body=page.html,
            headers=dict(page.headers),
        )


__all__ = ["StaticPage", "content_security_policy"]
