"""Writes the OpenAPI document of the API from the code (``make openapi``).

The routes, their methods and whether they take an API key come from ``template.yaml`` (the
gateway's view, read as the local runtime reads it); what each route takes and answers comes
from its function's ``TollgateResolver``: the pydantic models of its body and query
(``RouteSpec``), of its answers (the return annotation or ``@responds``), and the problem
model of every error. Nothing here runs in Lambda: the document is written once, to
``docs/openapi.json`` and to the layer's ``tollgate/data/openapi.json``, which
``GET /v1/openapi.json`` serves.

    python -m tollgate_local.openapi           # rewrite both files
    python -m tollgate_local.openapi --check   # exit 1 when either is stale
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

import tollgate
from tollgate.api.params import RouteSpec
from tollgate.api.problems import PROBLEM_CONTENT_TYPE
from tollgate.api.resolver import TollgateResolver
from tollgate.api.schemas.common import ProblemOut
from tollgate_local.gateway import ApiDefinition, Route
from tollgate_local.invoke import handler_ref
from tollgate_local.template import REPO_ROOT, Resolver, default_template, parameter_defaults

DOCS_PATH = REPO_ROOT / "docs" / "openapi.json"
LAYER_PATH = REPO_ROOT / "layers" / "tollgate" / "tollgate" / "data" / "openapi.json"
OUTPUTS = (DOCS_PATH, LAYER_PATH)
SECURITY_SCHEME = "ApiKey"
_REF = "#/components/schemas/{model}"


class _Schema(GenerateJsonSchema):
    """pydantic's JSON Schema, with ``Decimal`` answers as numbers: Tollgate writes amounts as
    exact JSON numbers (``exact_json_response``), never as strings."""

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        if self.mode == "serialization":
            return {"type": "number"}
        return super().decimal_schema(schema)


def _rule_of(path: str) -> str:
    """``/v1/orgs/{org_id}`` (API Gateway) -> ``/v1/orgs/<org_id>`` (Powertools)."""
    return re.sub(r"\{(\w+)\+?\}", r"<\1>", path)


def _resolver_of(template: Mapping[str, Any], function_id: str) -> TollgateResolver:
    module = importlib.import_module(handler_ref(template, function_id).module)
    app = getattr(module, "app", None)
    if not isinstance(app, TollgateResolver):
        raise ValueError(f"{function_id} ({module.__name__}) has no TollgateResolver named app")
    return app


def _route_specs(template: Mapping[str, Any]) -> list[tuple[Route, RouteSpec, tuple[str, ...]]]:
    """Every route of the template with the spec of the function's route that serves it and
    the request headers its middlewares honour (``Idempotency-Key``)."""
    api = ApiDefinition.from_template(template, Resolver(refs=parameter_defaults(template)))
    resolvers: dict[str, TollgateResolver] = {}
    found: list[tuple[Route, RouteSpec, tuple[str, ...]]] = []
    missing: list[str] = []
    for route in sorted(api.routes, key=lambda r: (r.path, r.method)):
        if route.function_id not in resolvers:
            resolvers[route.function_id] = _resolver_of(template, route.function_id)
        app = resolvers[route.function_id]
        rule = _rule_of(route.path)
        funcs = [func for method, each, func in app.operations if method == route.method and each == rule]
        if not funcs:
            missing.append(f"{route.method} {route.path} ({route.function_id})")
            continue
        headers = tuple(
            str(middleware.honours_header)
            for middleware in app.middlewares.get((route.method, rule), ())
            if hasattr(middleware, "honours_header")
        )
        found.append((route, app.spec(route.method, rule, funcs[0]), headers))
    if missing:
        raise ValueError("template routes no function serves: " + ", ".join(missing))
    return found


def _query_parameters(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required") or ())
    parameters = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = dict(raw)
        prop.pop("title", None)
        # A query parameter is absent, never null.
        options = prop.pop("anyOf", None)
        if options is not None:
            kept = [option for option in options if option.get("type") != "null"]
            prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        if prop.get("default", 0) is None:
            del prop["default"]
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append(parameter)
    return parameters


def _summary(spec: RouteSpec) -> str | None:
    doc = (spec.func.__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ").strip() or None


def build_document(template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the template's API."""
    template = template if template is not None else default_template()
    routes = _route_specs(template)
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ProblemOut, "serialization")]
    for _, spec, _ in routes:
        if spec.body_model is not None:
            inputs.append((spec.body_model, "validation"))
        if spec.query_model is not None:
            inputs.append((spec.query_model, "validation"))
        inputs.extend((answer.model, "serialization") for answer in spec.answers if answer.model is not None)
    refs, top = models_json_schema(list(dict.fromkeys(inputs)), ref_template=_REF, schema_generator=_Schema)
    schemas: dict[str, Any] = dict(top.get("$defs") or {})

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(refs[(model, mode)])

    def inline(model: type[BaseModel]) -> dict[str, Any]:
        name = ref(model, "validation")["$ref"].rsplit("/", 1)[1]
        return dict(schemas.pop(name))

    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route, spec, headers in routes:
        operation_id = spec.func.__name__
        if operation_id in operation_ids:
            operation_id = f"{route.function_id.removesuffix('Function').lower()}_{operation_id}"
        operation_ids.add(operation_id)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [route.function_id.removesuffix("Function")],
        }
        summary = _summary(spec)
        if summary:
            operation["summary"] = summary
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in spec.path_params
        ]
        if spec.query_model is not None:
            parameters.extend(_query_parameters(inline(spec.query_model)))
        parameters.extend(
            {
                "name": header,
                "in": "header",
                "required": False,
                "description": "The same key and body answer the first answer again (24 h)",
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
            }
            for header in headers
        )
        if parameters:
            operation["parameters"] = parameters
        if spec.body_model is not None:
            operation["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": ref(spec.body_model, "validation")}},
            }
        responses: dict[str, Any] = {}
        for answer in spec.answers:
            described: dict[str, Any] = {"description": answer.description}
            if answer.status != 204:
                schema = (
                    ref(answer.model, "serialization") if answer.model else _any_schema(answer.content_type)
                )
                described["content"] = {answer.content_type: {"schema": schema}}
            responses[str(answer.status)] = described
        if not responses:
            raise ValueError(f"{route.method} {route.path}: no answer declared (return a model or @responds)")
        responses["4XX"] = {"$ref": "#/components/responses/Problem"}
        responses["5XX"] = {"$ref": "#/components/responses/Problem"}
        operation["responses"] = responses
        if route.authorizer is None:
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = operation

    problem = ref(ProblemOut, "serialization")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tollgate",
            "version": tollgate.__version__,
            "description": (
                "A serverless AI usage gateway. Authenticate with `Authorization: Bearer tg_...`. "
                "Money is in integer micro-USD and credits (1 credit = 10,000 units); every error "
                "is RFC 9457 problem JSON. Generated from the code by `make openapi`."
            ),
        },
        "servers": [
            {
                "url": "https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
                "variables": {
                    "api_id": {"default": "example"},
                    "region": {"default": "us-east-1"},
                    "stage": {"default": "dev", "enum": ["dev", "prod"]},
                },
            },
            {"url": "http://127.0.0.1:3000", "description": "the local runtime (make run)"},
        ],
        "security": [{SECURITY_SCHEME: []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "tg_<kid>_<secret>",
                    "description": "An API key of an org (or the admin key).",
                }
            },
            "responses": {
                "Problem": {
                    "description": "An error, as RFC 9457 problem details",
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": problem}},
                }
            },
            "schemas": dict(sorted(schemas.items())),
        },
    }


def _any_schema(content_type: str) -> dict[str, Any]:
    return {"type": "string"} if content_type.startswith("text/") else {"type": "object"}


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=_default) + "\n"


def stale_outputs(text: str, outputs: tuple[Path, ...] = OUTPUTS) -> list[Path]:
    return [path for path in outputs if not path.exists() or path.read_text("utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only say whether the files are up to date")
    args = parser.parse_args(argv)
    text = render(build_document())
    stale = stale_outputs(text)
    if args.check:
        for path in stale:
            print(f"{path.relative_to(REPO_ROOT)} is stale: run make openapi", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
