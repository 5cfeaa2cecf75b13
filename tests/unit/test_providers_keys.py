"""Where provider credentials come from: env locally, one JSON secret in AWS (Powertools)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.exceptions import ClientError

from tollgate.aws.provider_keys import ParameterProviderKeys
from tollgate.errors import ServiceUnavailable
from tollgate.providers.keys import ChainedProviderKeys, EnvProviderKeys, StaticProviderKeys
from tollgate.settings import Settings


def test_env_keys_come_from_the_settings() -> None:
    settings = Settings.from_env(
        {"OPENAI_API_KEY": "sk-env", "GEMINI_API_KEY": " ", "OLLAMA_BASE_URL": "http://localhost:11434"}
    )
    keys = EnvProviderKeys.from_settings(settings)
    assert keys.key_for("openai") == "sk-env"
    assert keys.key_for("gemini") is None  # blank is absent
    assert keys.key_for("anthropic") is None
    assert keys.key_for("ollama_base_url") == "http://localhost:11434"


def test_keys_are_never_in_the_settings_repr() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(settings)


def test_the_first_source_with_a_key_wins() -> None:
    chained = ChainedProviderKeys(
        [StaticProviderKeys({"openai": "env"}), StaticProviderKeys({"openai": "aws", "gemini": "g"})]
    )
    assert (chained.key_for("openai"), chained.key_for("gemini"), chained.key_for("stability")) == (
        "env",
        "g",
        None,
    )


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetSecretValue")


def _powertools_failure(cause: Exception) -> GetParameterError:
    # Powertools raises GetParameterError inside its ``except``: the AWS error is the context.
    try:
        raise cause
    except Exception as exc:
        try:
            raise GetParameterError(str(exc))
        except GetParameterError as wrapped:
            return wrapped


def test_the_secret_is_read_as_json_with_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def get_secret(name: str, **kwargs: Any) -> Any:
        calls.append((name, kwargs))
        return {"openai": "sk-aws", "anthropic": "", "ollama_base_url": "http://10.0.0.5:11434"}

    monkeypatch.setattr(parameters, "get_secret", get_secret)
    keys = ParameterProviderKeys.from_settings(
        Settings.from_env(
            {"PROVIDER_KEYS_SECRET": "tollgate/dev/provider-keys", "SECRETS_CACHE_SECONDS": "120"}
        )
    )
    assert keys is not None
    assert keys.key_for("openai") == "sk-aws"
    assert keys.key_for("anthropic") is None
    assert keys.key_for("ollama_base_url") == "http://10.0.0.5:11434"
    assert calls[0] == ("tollgate/dev/provider-keys", {"max_age": 120, "transform": "json"})


def test_an_ssm_parameter_is_read_decrypted(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def get_parameter(name: str, **kwargs: Any) -> Any:
        seen.update(kwargs, name=name)
        return {"stability": "sk-st"}

    monkeypatch.setattr(parameters, "get_parameter", get_parameter)
    keys = ParameterProviderKeys(parameter_name="/tollgate/provider-keys")
    assert keys.key_for("stability") == "sk-st"
    assert seen == {"name": "/tollgate/provider-keys", "max_age": 300, "decrypt": True, "transform": "json"}


def test_a_missing_secret_configures_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_secret(name: str, **kwargs: Any) -> Any:
        raise _powertools_failure(_client_error("ResourceNotFoundException"))

    monkeypatch.setattr(parameters, "get_secret", get_secret)
    assert ParameterProviderKeys(secret_name="absent").key_for("openai") is None


def test_a_secret_that_is_not_json_configures_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_secret(name: str, **kwargs: Any) -> Any:
        raise TransformParameterError("not json")

    monkeypatch.setattr(parameters, "get_secret", get_secret)
    assert ParameterProviderKeys(secret_name="plain").key_for("openai") is None


def test_an_aws_outage_is_a_503_not_a_silent_unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_secret(name: str, **kwargs: Any) -> Any:
        raise _powertools_failure(_client_error("ThrottlingException"))

    monkeypatch.setattr(parameters, "get_secret", get_secret)
    with pytest.raises(ServiceUnavailable):
        ParameterProviderKeys(secret_name="busy").key_for("openai")


def test_no_store_named_means_no_aws_source() -> None:
    assert ParameterProviderKeys.from_settings(Settings.from_env({})) is None
