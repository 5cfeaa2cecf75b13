"""Secrets and parameters through Powertools Parameters (cached for ``max_age`` seconds)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

from tollgate.aws.identity_store import admin_key_from_json
from tollgate.identity.ports import AdminKey


class ParameterSecrets:
    """The key pepper (Secrets Manager) and the bootstrap admin key record (SSM)."""

    def __init__(self, pepper_secret: str, admin_key_parameter: str, max_age: int = 300) -> None:
        self._pepper_secret = pepper_secret
        self._admin_parameter = admin_key_parameter
        self._max_age = max_age

    def key_pepper(self) -> bytes:
        value = parameters.get_secret(self._pepper_secret, max_age=self._max_age)
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)

    def admin_key(self) -> AdminKey | None:
        value = parameters.get_parameter(self._admin_parameter, max_age=self._max_age)
        return admin_key_from_json(value if isinstance(value, str) else None)
