"""What the identity domain needs from storage and secrets; adapters live in ``tollgate.aws``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from msgspec import Struct

from tollgate.identity.models import KeyRecord, Org


class AdminKey(Struct, frozen=True):
    """The bootstrap admin key, kept outside the table (an SSM parameter in AWS)."""

    key_id: str
    key_hash: str
    user: str = "admin"


class IdentityStore(Protocol):
    def put_org(self, org: Org) -> None:
        """Create an org; raises ``Conflict`` if the id exists."""
        ...

    def get_org(self, org_id: str) -> Org | None: ...

    def update_org(self, org: Org) -> None:
        """Replace an org's name, plan, settings and limit overrides; ``NotFound`` if absent."""
        ...

    def put_key(self, record: KeyRecord) -> None:
        """Create a key record; raises ``Conflict`` if the id exists."""
        ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

    def list_keys(self, org_id: str) -> list[KeyRecord]: ...

    def list_org_ids(self) -> Iterator[str]:
        """Every org id (scheduled work runs over them all)."""
        ...

    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        """Mark a key revoked once; raises ``Conflict`` if it already is, ``NotFound`` if absent."""
        ...

    def rotate_key(self, old_key_id: str, new: KeyRecord, old_expires_at: datetime) -> None:
        """Atomically create ``new`` and make the old key expire; ``Conflict`` if the old one is
        revoked or already rotated."""
        ...

    def touch_key(self, key_id: str, at: datetime, stale_before: datetime) -> None:
        """Record a use, only if the last recorded use is older than ``stale_before``."""
        ...


class IdentitySecrets(Protocol):
    def key_pepper(self) -> bytes: ...

    def admin_key(self) -> AdminKey | None: ...
