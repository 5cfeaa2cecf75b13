"""Route parameters: the JSON body and the query string, validated with pydantic.

A route declares what it takes in its signature, as with Powertools' own markers::

    @app.get("/v1/requests")
    def list_requests(limit: Annotated[int, Query(ge=1, le=200)] = 20) -> Response[str]: ...

    @app.post("/v1/generate")
    def generate(body: Annotated[GenerateRequest, Body()]) -> Response[str]: ...

``TollgateResolver`` (``tollgate.api.resolver``) wraps every route with ``RouteSpec.call``,
which validates the body and the query string before the route runs: a body that is not JSON
is ``400``, fields that are missing, unknown or ill-typed are ``422`` with one error per field.
Bodies are validated strictly (``strict=True`` here, the one place for the rule, nested models
included): a JSON boolean only for a ``bool``, a number (not a boolean, not a string) for an
``int``, ``float`` or ``Decimal``, a string for a ``str``; enums and ``Literal`` take their
string values and datetimes ISO strings (pydantic's strict JSON mode). A body read with exact
numbers is validated in Python mode, where strict refuses strings for a datetime: such a field
is annotated ``IsoDatetime`` (``tollgate.api.schemas.common``). Query strings stay lax (they
are text).
Path parameters arrive as strings, as Powertools passes them.

Why not Powertools' ``enable_validation``: its OpenAPI machinery is imported by every function
at cold start and costs about 100 ms (``bench/cold_imports.py``); this does the same checks
with pydantic alone. The specs are kept on the resolver, so the OpenAPI document is still
generated from the code.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from msgspec import Struct
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from tollgate.errors import FieldError, InvalidRequest, ValidationFailed

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


class Body:
    """Marks the parameter that receives the request body, validated as its model.

    ``exact_numbers``: read fractions as ``Decimal`` (never ``float``) for this route, as the
    resolver's ``decimal_numbers`` does for all of a function's routes (template variables)."""

    def __init__(self, *, description: str | None = None, exact_numbers: bool = False) -> None:
        self.description = description
        self.exact_numbers = exact_numbers


class Answer(Struct, frozen=True):
    """One documented success answer of a route: its status and body model (``None``: no
    JSON model, e.g. ``204`` or a page)."""

    status: int
    model: type[BaseModel] | None
    description: str
    content_type: str


ModelRef = type[BaseModel] | Callable[[], type[BaseModel]]
"""A model, or a function giving it (a model of a module imported on first use)."""


class _Declared(Struct, frozen=True):
    """An answer as ``@responds`` declares it: the model possibly still a function."""

    status: int
    model: ModelRef | None
    description: str
    content_type: str

    def answer(self) -> Answer:
        model = self.model
        if model is not None and not isinstance(model, type):
            model = model()
        return Answer(self.status, model, self.description, self.content_type)


def responds(
    status: int,
    model: ModelRef | None = None,
    *,
    description: str | None = None,
    content_type: str = "application/json",
) -> Callable[[F], F]:
    """Declares a success answer of a route that returns a ``Response`` (a route that returns
    its model needs none: the return annotation says it). Read only to write the OpenAPI
    document (``tollgate_local.openapi``); it costs nothing at request time::

        @app.post("/v1/orgs")
        @responds(201, OrgOut)
        def create_org(...) -> Response[Any]: ...

    ``model`` may be a function giving the model, for a model of a module imported on first
    use (``tollgate.lazy``): it is called when the route's spec is first read.
    """

    def mark(func: F) -> F:
        answers: list[_Declared] = list(getattr(func, _ANSWERS, ()))
        answers.append(_Declared(status, model, description or _default_description(status), content_type))
        setattr(func, _ANSWERS, tuple(answers))
        return func

    return mark


_ANSWERS = "__tollgate_answers__"


def _default_description(status: int) -> str:
    return {200: "OK", 201: "Created", 202: "Accepted", 204: "No content"}.get(status, "Success")


class Query:
    """Marks a query-string parameter. Keyword constraints are pydantic ``Field``'s: ``ge``,
    ``le``, ``min_length``, ``max_length``, ``pattern``, ``description``, ``alias``."""

    def __init__(self, **constraints: Any) -> None:
        self.constraints = constraints


def field_errors(exc: ValidationError, prefix: str | None = None) -> list[FieldError]:
    """Pydantic's errors as one ``FieldError`` per field, without Python internals."""
    result = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error.get("loc", ())]
        if prefix is not None:
            loc.insert(0, prefix)
        name = ".".join(loc) or "body"
        kind = str(error.get("type", "invalid"))
        message = str(error.get("msg", "Invalid value"))
        if kind == "missing":
            message = "Field required"
        elif kind == "extra_forbidden":
            message = "Unknown field"
        result.append(FieldError(field=name, message=message, kind=kind))
    return result


def validate_json_value(model: type[M], value: Any, prefix: str) -> M:
    """A free-form (``Any``) part of a JSON body validated as ``model`` by the same strict rule
    as bodies (its JSON form, so enums, tuples and ISO datetimes read as they do in a body);
    ``422`` naming each field under ``prefix``."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        raise ValidationFailed([FieldError(prefix, "Not a JSON value", "json_type")]) from None
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc, prefix)) from None


def _reject_lone_surrogates(value: Any) -> None:
    """``json.loads`` accepts ``"\\ud800"``; nothing downstream can store it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("The request body has an invalid unicode escape") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_lone_surrogates(key)
            _reject_lone_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _reject_lone_surrogates(item)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``Model | None`` -> (``Model``, True)."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1 and len(members) < len(get_args(annotation)):
            return members[0], True
    return annotation, False


def _is_list(annotation: Any) -> bool:
    inner, _ = _strip_optional(annotation)
    return get_origin(inner) in (list, tuple, Sequence)


class QueryParam(Struct, frozen=True):
    name: str
    annotation: Any
    default: Any
    constraints: Mapping[str, Any]

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


class RouteSpec(Struct):
    """What a route takes and answers, read from its signature (once, on first use)."""

    method: str
    path: str
    func: Callable[..., Any]
    body_param: str | None = None
    body_model: type[BaseModel] | None = None
    body_required: bool = False
    body_exact_numbers: bool = False
    query: tuple[QueryParam, ...] = ()
    path_params: tuple[str, ...] = ()
    response_model: type[BaseModel] | None = None
    answers: tuple[Answer, ...] = ()
    _query_model: type[BaseModel] | None = None

    @classmethod
    def of(cls, method: str, path: str, func: Callable[..., Any]) -> RouteSpec:
        hints = typing.get_type_hints(func, include_extras=True)
        spec = cls(method=method.upper(), path=path, func=func)
        query: list[QueryParam] = []
        path_params: list[str] = []
        for name, parameter in inspect.signature(func).parameters.items():
            annotation = hints.get(name, str)
            marker = None
            if get_origin(annotation) is Annotated:
                base, *extras = get_args(annotation)
                marker = next((extra for extra in extras if isinstance(extra, Body | Query)), None)
                annotation = base
            if isinstance(marker, Body):
                model, optional = _strip_optional(annotation)
                if not (isinstance(model, type) and issubclass(model, BaseModel)):
                    raise TypeError(f"{func.__name__}: a Body() parameter must be a pydantic model")
                spec.body_param = name
                spec.body_model = model
                spec.body_required = parameter.default is inspect.Parameter.empty and not optional
                spec.body_exact_numbers = marker.exact_numbers
            elif isinstance(marker, Query):
                query.append(QueryParam(name, annotation, parameter.default, marker.constraints))
            else:
                path_params.append(name)
        spec.query = tuple(query)
        spec.path_params = tuple(path_params)
        returned = hints.get("return")
        if isinstance(returned, type) and issubclass(returned, BaseModel):
            spec.response_model = returned
        declared: tuple[_Declared, ...] = getattr(func, _ANSWERS, ())
        if declared:
            spec.answers = tuple(sorted((d.answer() for d in declared), key=lambda answer: answer.status))
        elif spec.response_model is not None:
            spec.answers = (Answer(200, spec.response_model, "OK", "application/json"),)
        return spec

    @property
    def query_model(self) -> type[BaseModel] | None:
        """One pydantic model of every query parameter (unknown parameters are ignored)."""
        if self.query and self._query_model is None:
            fields: dict[str, Any] = {
                param.name: (
                    param.annotation,
                    Field(... if param.required else param.default, **param.constraints),
                )
                for param in self.query
            }
            self._query_model = create_model(
                f"{self.func.__name__}_query", __config__=ConfigDict(extra="ignore"), **fields
            )
        return self._query_model

    def parse_query(
        self, single: Mapping[str, str] | None, multi: Mapping[str, Sequence[str]] | None
    ) -> dict[str, Any]:
        model = self.query_model
        if model is None:
            return {}
        values: dict[str, Any] = {}
        for param in self.query:
            key = str(param.constraints.get("alias") or param.name)
            if _is_list(param.annotation) and multi and key in multi:
                values[key] = list(multi[key])
            elif single and key in single:
                values[key] = single[key]
        try:
            parsed = model.model_validate(values)
        except ValidationError as exc:
            raise ValidationFailed(field_errors(exc, "query")) from None
        return {param.name: getattr(parsed, param.name) for param in self.query}

    def parse_body(self, text: str | None, *, decimal_numbers: bool) -> BaseModel | None:
        assert self.body_model is not None
        if text is None or not text.strip():
            if self.body_required:
                raise ValidationFailed([FieldError("body", "A JSON body is required", "missing")])
            return None
        try:
            if decimal_numbers:
                # Fractions as Decimal, never float: money must stay exact (S4).
                try:
                    data = json.loads(text, parse_float=Decimal)
                except ValueError:
                    raise InvalidRequest("The request body is not valid JSON") from None
                _reject_lone_surrogates(data)
                return self.body_model.model_validate(data, strict=True)
            return self.body_model.model_validate_json(text, strict=True)
        except ValidationError as exc:
            errors = field_errors(exc)
            if any(error.kind in ("json_invalid", "json_type") for error in errors):
                raise InvalidRequest("The request body is not valid JSON") from None
            raise ValidationFailed(errors) from None


__all__ = [
    "Answer",
    "Body",
    "Query",
    "QueryParam",
    "RouteSpec",
    "field_errors",
    "responds",
    "validate_json_value",
]
