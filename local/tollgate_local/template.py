"""Reads ``template.yaml``: the one description of routes, functions and resources.

The YAML short forms of CloudFormation intrinsics (``!Ref``, ``!GetAtt``, ``!Sub``, ...) load as
their long forms, and ``Resolver`` evaluates them against the physical names the local
runtime (or a test) gave to each resource. Globals are merged into each function the way SAM
merges them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

_INTRINSICS = ["Ref", "Condition"]
_FN = [
    "GetAtt",
    "Sub",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "Base64",
    "GetAZs",
    "ImportValue",
    "Cidr",
    "Length",
    "ToJsonString",
]


class _Loader(yaml.SafeLoader):
    pass


def _construct(tag: str) -> Any:
    def build(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {tag: value}

    return build


for _name in _INTRINSICS:
    _Loader.add_constructor(f"!{_name}", _construct(_name))
for _name in _FN:
    _Loader.add_constructor(f"!{_name}", _construct(f"Fn::{_name}"))


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_Loader)  # noqa: S506 - SafeLoader subclass with intrinsic tags
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a template")
    return data


@cache
def default_template() -> dict[str, Any]:
    return load_template()


@dataclass
class Resolver:
    """Evaluates intrinsics: ``refs`` maps logical ids and parameters to what ``Ref`` gives,
    ``attributes`` maps (logical id, attribute) to what ``GetAtt`` gives."""

    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(str(arg))
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self._att(str(parts[0]), str(parts[1]))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(self.resolve(i)) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(str(sep))
            if key == "Fn::ToJsonString":
                import json

                return json.dumps(self.resolve(arg))
        return {k: self.resolve(v) for k, v in value.items()}

    def _ref(self, name: str) -> Any:
        if name not in self.refs:
            raise KeyError(f"Ref to unknown name {name!r}")
        return self.refs[name]

    def _att(self, logical_id: str, attribute: str) -> Any:
        if (logical_id, attribute) not in self.attributes:
            raise KeyError(f"GetAtt {logical_id}.{attribute} is unknown")
        return self.attributes[(logical_id, attribute)]

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, extra = str(arg[0]), {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, extra = str(arg), {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and name not in self.refs:
                logical_id, attribute = name.split(".", 1)
                return str(self._att(logical_id, attribute))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def parameter_defaults(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> dict[str, Any]:
    values = {name: spec.get("Default") for name, spec in (template.get("Parameters") or {}).items()}
    values.update(overrides or {})
    return values


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == resource_type
    }


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return override if override is not None else base


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties with ``Globals.Function`` merged in, as SAM does."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    own = template["Resources"][logical_id].get("Properties") or {}
    merged: dict[str, Any] = _merge(globals_, own)
    layers = list(globals_.get("Layers") or []) + [
        layer for layer in own.get("Layers") or [] if layer not in (globals_.get("Layers") or [])
    ]
    merged["Layers"] = layers
    return merged


@dataclass(frozen=True)
class TableDefinition:
    logical_id: str
    properties: dict[str, Any]

    def create_table_kwargs(self, table_name: str) -> dict[str, Any]:
        """Arguments for ``dynamodb.create_table`` from the template's definition."""
        props = self.properties
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = [
                {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
                for i in props["GlobalSecondaryIndexes"]
            ]
        return kwargs

    @property
    def ttl_attribute(self) -> str | None:
        spec = self.properties.get("TimeToLiveSpecification") or {}
        return spec.get("AttributeName") if spec.get("Enabled") else None


def table_definitions(template: Mapping[str, Any]) -> list[TableDefinition]:
    return [
        TableDefinition(logical_id, resource.get("Properties") or {})
        for logical_id, resource in resources_of_type(template, "AWS::DynamoDB::Table").items()
    ]


def function_environment(template: Mapping[str, Any], logical_id: str, resolver: Resolver) -> dict[str, str]:
    """A function's environment variables (Globals merged), with intrinsics resolved."""
    props = function_properties(template, logical_id)
    variables = ((props.get("Environment") or {}).get("Variables")) or {}
    return {name: str(resolver.resolve(value)) for name, value in variables.items()}


def function_ids(template: Mapping[str, Any]) -> list[str]:
    return list(resources_of_type(template, "AWS::Serverless::Function"))
