"""The environment the template gives the functions and the settings the code reads are the same
names, and the deploy configuration names the template's parameters: nothing drifts."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tollgate.settings import Settings
from tollgate_local.template import (
    Resolver,
    default_template,
    function_environment,
    function_ids,
    parameter_defaults,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Read by libraries or the Lambda runtime, not by Settings.
NOT_SETTINGS_PREFIXES = ("POWERTOOLS_", "TIKTOKEN_", "AWS_", "PYDANTIC_")


def _variables(properties: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(((properties or {}).get("Environment") or {}).get("Variables") or {})


def template_env_names() -> dict[str, list[str]]:
    """Every environment variable name the template sets, with where it is set."""
    template = default_template()
    where: dict[str, list[str]] = {}
    for name in _variables((template.get("Globals") or {}).get("Function")):
        where.setdefault(name, []).append("Globals")
    for function_id in function_ids(template):
        for name in _variables(template["Resources"][function_id].get("Properties")):
            where.setdefault(name, []).append(function_id)
    return where


def _is_setting(name: str) -> bool:
    return not name.startswith(NOT_SETTINGS_PREFIXES)


def _local_only_names() -> set[str]:
    """Aliases marked local-only in Settings (provider keys for local runs): never in a template."""
    return {
        field.alias
        for field in Settings.model_fields.values()
        if field.alias
        and isinstance(field.json_schema_extra, dict)
        and field.json_schema_extra.get("local_only")
    }


def test_every_variable_the_template_sets_is_a_setting() -> None:
    # Given the names the template sets (Globals and each function), less library variables
    set_in_template = {name: where for name, where in template_env_names().items() if _is_setting(name)}

    # Then each is read by Settings under exactly that name
    unknown = {name: where for name, where in set_in_template.items() if name not in Settings.env_names()}
    assert not unknown, f"template.yaml sets variables Settings does not read: {unknown}"


def test_every_setting_is_set_in_the_template() -> None:
    # Given the names Settings reads, less the local-only ones
    expected = Settings.env_names() - _local_only_names()

    # Then the template sets each of them somewhere (Globals or a function)
    missing = sorted(expected - set(template_env_names()))
    assert not missing, f"Settings reads variables template.yaml never sets: {missing}"


def test_local_only_settings_never_appear_in_the_template() -> None:
    leaked = sorted(_local_only_names() & set(template_env_names()))
    assert not leaked, f"local-only variables (secrets) set in template.yaml: {leaked}"


def test_no_setting_uses_a_reserved_prefix() -> None:
    assert not [name for name in Settings.env_names() if not _is_setting(name)]


class _PlaceholderResolver(Resolver):
    """Resolves every Ref and GetAtt to a placeholder name: enough to validate values."""

    def _ref(self, name: str) -> Any:
        return self.refs.get(name, f"{name}-placeholder")

    def _att(self, logical_id: str, attribute: str) -> Any:
        return f"arn:aws:placeholder:{logical_id}:{attribute}"


@pytest.mark.parametrize("function_id", function_ids(default_template()))
def test_each_function_environment_is_valid_settings(function_id: str) -> None:
    # Given a function's environment as the template sets it (Globals merged)
    template = default_template()
    resolver = _PlaceholderResolver(refs={**parameter_defaults(template), "AWS::Region": "us-east-1"})
    environment = function_environment(template, function_id, resolver)

    # Then the settings model accepts its values (types and bounds)
    Settings.from_env(environment)


# ---------------------------------------------------------------- samconfig.toml


def _samconfig() -> dict[str, Any]:
    with (REPO_ROOT / "samconfig.toml").open("rb") as handle:
        return tomllib.load(handle)


def _overrides(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


@pytest.mark.parametrize(("env", "stage"), [("dev", "dev"), ("prod", "prod")])
def test_samconfig_deploys_each_stage_with_the_template_parameters(env: str, stage: str) -> None:
    # Given the deploy settings of an environment
    deploy = _samconfig()[env]["deploy"]["parameters"]
    parameters = default_template()["Parameters"]

    # Then it deploys its own stack, names only template parameters with allowed values,
    # and has what `sam deploy --config-env <env>` needs without prompting
    assert deploy["stack_name"] == f"tollgate-{stage}"
    overrides = _overrides(deploy["parameter_overrides"])
    assert overrides["Stage"] == stage
    for name, value in overrides.items():
        assert name in parameters, f"{env}: unknown parameter {name}"
        allowed = parameters[name].get("AllowedValues")
        assert allowed is None or value in [str(v) for v in allowed], f"{env}: {name}={value}"
    assert "CAPABILITY_IAM" in str(deploy["capabilities"]).split()
    assert deploy["resolve_s3"] is True


def test_prod_deploys_ask_for_confirmation() -> None:
    config = _samconfig()
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert config["version"] == 0.1
