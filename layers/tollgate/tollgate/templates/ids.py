"""Template ids: ``tpl_`` then a generated id or a starter's slug (``tpl_starter-listing-photo``).

Kept apart (a regex and nothing else) so that routes checking an id import nothing more."""

from __future__ import annotations

import re

from tollgate.errors import NotFound

TEMPLATE_ID = re.compile(r"^tpl_[0-9a-z][0-9a-z_-]{0,59}$")


def is_template_id(value: str) -> bool:
    """True when ``value`` has the shape of a template id (checked before any lookup)."""
    return bool(TEMPLATE_ID.match(value))


def check_template_id(template_id: str) -> str:
    """A template id from a path or body: anything that cannot be one is simply not found."""
    if not is_template_id(template_id):
        raise NotFound(f"No template {template_id[:80]!r}")
    return template_id


__all__ = ["TEMPLATE_ID", "check_template_id", "is_template_id"]
