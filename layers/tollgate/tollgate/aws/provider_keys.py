"""Provider credentials in AWS: one JSON object in Secrets Manager or SSM, cached.

The secret (or SecureString parameter) holds ``{"openai": "sk-...", "anthropic": "...",
"gemini": "...", "stability": "...", "ollama_base_url": "http://..."}``; a provider missing from
it is not configured. Powertools Parameters caches the object for ``max_age`` seconds, so a
warm function makes no AWS call for it, and a rotated key is picked up within that time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.exceptions import ClientError

from tollgate.errors import ServiceUnavailable
from tollgate.settings import Settings

logger = Logger()

# A secret or parameter that does not exist means "no provider configured", not an outage.
_ABSENT_CODES = frozenset({"ResourceNotFoundException", "ParameterNotFound"})


class ParameterProviderKeys:
    """``ProviderKeySource`` over a Secrets Manager secret or an SSM parameter (JSON)."""

    def __init__(
        self, *, secret_name: str | None = None, parameter_name: str | None = None, max_age: int = 300
    ) -> None:
        self._secret_name = secret_name
        self._parameter_name = parameter_name
        self._max_age = max_age

    @classmethod
    def from_settings(cls, settings: Settings) -> ParameterProviderKeys | None:
        """The source the settings name, or ``None`` when they name neither store."""
        if not settings.provider_keys_secret and not settings.provider_keys_parameter:
            return None
        return cls(
            secret_name=settings.provider_keys_secret or None,
            parameter_name=settings.provider_keys_parameter or None,
            max_age=settings.secrets_cache_seconds,
        )

    def key_for(self, provider: str) -> str | None:
        value = self._keys().get(provider)
        return value.strip() if isinstance(value, str) and value.strip() else None

    def _keys(self) -> Mapping[str, Any]:
        try:
            if self._secret_name:
                value: Any = parameters.get_secret(self._secret_name, max_age=self._max_age, transform="json")
            elif self._parameter_name:
                value = parameters.get_parameter(
                    self._parameter_name, max_age=self._max_age, decrypt=True, transform="json"
                )
            else:
                return {}
        except TransformParameterError:
            logger.error("provider keys are not a JSON object; no provider is configured from AWS")
            return {}
        except GetParameterError as exc:
            # Powertools re-raises inside its ``except``, so the AWS error is the context.
            cause = exc.__context__
            if (
                isinstance(cause, ClientError)
                and cause.response.get("Error", {}).get("Code") in _ABSENT_CODES
            ):
                logger.warning("provider keys secret/parameter not found; no provider is configured from AWS")
                return {}
            raise ServiceUnavailable("could not read the provider keys") from exc
        if not isinstance(value, Mapping):
            logger.error("provider keys are not a JSON object; no provider is configured from AWS")
            return {}
        return value
