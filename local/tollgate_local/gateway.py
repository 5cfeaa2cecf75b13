"""API Gateway (REST API, proxy integration) as the template describes it.

Given the routes, the authorizer and the gateway responses of ``template.yaml``, ``Gateway``
turns an HTTP request into the Lambda proxy event API Gateway would send, runs the authorizer
(with its result cache), invokes the function and turns its answer back into HTTP. How a
function is invoked is left to an ``Invoker``: in-process for integration tests, a pool of
worker processes with each function's own environment for the local runtime.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tollgate_local.resources import ACCOUNT, REGION
from tollgate_local.template import Resolver, function_properties, resources_of_type

Invoker = Callable[[str, dict[str, Any]], dict[str, Any]]
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway REST API's limit
LOCAL_API_ID = "tollgatelocal"


class FunctionFailed(Exception):
    """The function raised or returned something API Gateway cannot use."""


@dataclass(frozen=True)
class Route:
    function_id: str
    method: str
    path: str  # as in the template, e.g. /v1/orgs/{org_id}
    authorizer: str | None
    pattern: re.Pattern[str]
    literal_segments: int

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        found = self.pattern.match(path)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class AuthorizerSpec:
    name: str
    function_id: str
    identity_headers: tuple[str, ...]
    ttl_seconds: int


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _route_pattern(path: str) -> tuple[re.Pattern[str], int]:
    parts = []
    literal = 0
    for segment in path.strip("/").split("/"):
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        param = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            parts.append(f"(?P<{greedy.group(1)}>.+)")
        elif param:
            parts.append(f"(?P<{param.group(1)}>[^/]+)")
        else:
            parts.append(re.escape(segment))
            literal += 1
    return re.compile("^/" + "/".join(parts) + "/?$"), literal


def _logical_id_of(arn_expression: Any) -> str:
    if isinstance(arn_expression, dict) and "Fn::GetAtt" in arn_expression:
        target = arn_expression["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    raise ValueError(f"authorizer FunctionArn must be !GetAtt <Function>.Arn, not {arn_expression!r}")


@dataclass
class ApiDefinition:
    """The REST API of the template: routes, authorizers and gateway responses."""

    stage: str
    routes: list[Route]
    authorizers: dict[str, AuthorizerSpec]
    default_authorizer: str | None
    gateway_responses: dict[str, dict[str, Any]]

    @classmethod
    def from_template(cls, template: Mapping[str, Any], resolver: Resolver) -> ApiDefinition:
        apis = resources_of_type(template, "AWS::Serverless::Api")
        if len(apis) != 1:
            raise ValueError("the local runtime serves exactly one AWS::Serverless::Api")
        ((api_id, api),) = apis.items()
        props = api.get("Properties") or {}
        auth = props.get("Auth") or {}
        authorizers = {
            name: AuthorizerSpec(
                name=name,
                function_id=_logical_id_of(spec["FunctionArn"]),
                identity_headers=tuple((spec.get("Identity") or {}).get("Headers") or ["Authorization"]),
                ttl_seconds=int(resolver.resolve((spec.get("Identity") or {}).get("ReauthorizeEvery", 300))),
            )
            for name, spec in (auth.get("Authorizers") or {}).items()
        }
        routes = []
        for function_id in resources_of_type(template, "AWS::Serverless::Function"):
            events = function_properties(template, function_id).get("Events") or {}
            for event in events.values():
                if event.get("Type") != "Api":
                    continue
                ev = event.get("Properties") or {}
                rest_api = ev.get("RestApiId")
                if isinstance(rest_api, dict) and rest_api.get("Ref") != api_id:
                    continue
                authorizer = (ev.get("Auth") or {}).get("Authorizer", auth.get("DefaultAuthorizer"))
                pattern, literal = _route_pattern(str(ev["Path"]))
                routes.append(
                    Route(
                        function_id=function_id,
                        method=str(ev["Method"]).upper(),
                        path=str(ev["Path"]),
                        authorizer=None if authorizer in (None, "NONE") else str(authorizer),
                        pattern=pattern,
                        literal_segments=literal,
                    )
                )
        routes.sort(key=lambda r: (-r.literal_segments, r.path.count("+")))
        return cls(
            stage=str(resolver.resolve(props.get("StageName", "dev"))),
            routes=routes,
            authorizers=authorizers,
            default_authorizer=auth.get("DefaultAuthorizer"),
            gateway_responses=resolver.resolve(props.get("GatewayResponses") or {}),
        )

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None


@dataclass
class _CacheEntry:
    policy: dict[str, Any]
    expires: float


@dataclass
class Gateway:
    api: ApiDefinition
    invoke: Invoker
    _auth_cache: dict[tuple[str, tuple[str, ...]], _CacheEntry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, list[str]], body: bytes
    ) -> HttpResponse:
        request_id = str(uuid.uuid4())
        method = method.upper()
        if len(body) > MAX_PAYLOAD_BYTES:
            return self._gateway_response("REQUEST_TOO_LARGE", 413, request_id, "Request Too Large")
        found = self.api.find(method, path)
        if found is None:
            return self._gateway_response(
                "MISSING_AUTHENTICATION_TOKEN", 403, request_id, "Missing Authentication Token"
            )
        route, path_params = found
        event = self._proxy_event(route, method, path, headers, query, body, path_params, request_id)
        if route.authorizer is not None:
            outcome = self._authorize(route, event)
            if isinstance(outcome, HttpResponse):
                return outcome
            event["requestContext"]["authorizer"] = outcome
        try:
            result = self.invoke(route.function_id, event)
            return self._http_response(result)
        except FunctionFailed as exc:
            return self._gateway_response("DEFAULT_5XX", 502, request_id, "Internal server error", str(exc))

    # -- authorizer ------------------------------------------------------------------------

    def _authorize(self, route: Route, event: dict[str, Any]) -> dict[str, Any] | HttpResponse:
        spec = self.api.authorizers[str(route.authorizer)]
        request_id = event["requestContext"]["requestId"]
        lowered = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        identity = tuple(lowered.get(h.lower(), "") for h in spec.identity_headers)
        if not all(identity):
            return self._gateway_response("UNAUTHORIZED", 401, request_id, "Unauthorized")
        cache_key = (spec.name, identity)
        now = time.monotonic()
        with self._lock:
            cached = self._auth_cache.get(cache_key)
        if cached is not None and cached.expires > now:
            policy = cached.policy
        else:
            auth_event = {
                "type": "REQUEST",
                "methodArn": self._method_arn(event),
                **{
                    k: event[k]
                    for k in (
                        "resource",
                        "path",
                        "httpMethod",
                        "headers",
                        "multiValueHeaders",
                        "queryStringParameters",
                        "multiValueQueryStringParameters",
                        "pathParameters",
                        "stageVariables",
                        "requestContext",
                    )
                },
            }
            try:
                policy = self.invoke(spec.function_id, auth_event)
            except FunctionFailed as exc:
                if "Unauthorized" in str(exc):
                    return self._gateway_response("UNAUTHORIZED", 401, request_id, "Unauthorized")
                return self._gateway_response("AUTHORIZER_FAILURE", 500, request_id, "Authorizer error")
            if spec.ttl_seconds > 0:
                with self._lock:
                    self._auth_cache[cache_key] = _CacheEntry(policy, now + spec.ttl_seconds)
        context = dict(policy.get("context") or {})
        if not self._allows(policy, event):
            return self._gateway_response("ACCESS_DENIED", 403, request_id, "Forbidden", authorizer=context)
        context["principalId"] = policy.get("principalId", "")
        return context

    def _method_arn(self, event: Mapping[str, Any]) -> str:
        return (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{LOCAL_API_ID}/{self.api.stage}/"
            f"{event['httpMethod']}{event['path']}"
        )

    def _allows(self, policy: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
        arn = self._method_arn(event)
        allowed = False
        for statement in (policy.get("policyDocument") or {}).get("Statement") or []:
            resources = statement.get("Resource")
            resources = resources if isinstance(resources, list) else [resources]
            if any(re.fullmatch(re.escape(str(r)).replace(r"\*", ".*"), arn) for r in resources):
                if statement.get("Effect") == "Deny":
                    return False
                allowed = allowed or statement.get("Effect") == "Allow"
        return allowed

    # -- events and responses --------------------------------------------------------------

    def _proxy_event(
        self,
        route: Route,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        body: bytes,
        path_params: dict[str, str],
        request_id: str,
    ) -> dict[str, Any]:
        text: str | None
        try:
            text, encoded = (body.decode("utf-8"), False) if body else (None, False)
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": dict(query) or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": LOCAL_API_ID,
                "resourcePath": route.path,
                "httpMethod": method,
                "path": f"/{self.api.stage}{path}",
                "stage": self.api.stage,
                "requestId": request_id,
                "requestTimeEpoch": int(time.time() * 1000),
                "protocol": "HTTP/1.1",
                "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent", "")},
                "domainName": "127.0.0.1",
            },
            "body": text,
            "isBase64Encoded": encoded,
        }

    def _http_response(self, result: Mapping[str, Any]) -> HttpResponse:
        if not isinstance(result, Mapping) or "statusCode" not in result:
            raise FunctionFailed("malformed Lambda proxy response")
        headers: dict[str, str] = {}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(v) for v in values)
        for name, value in (result.get("headers") or {}).items():
            headers[name] = str(value)
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
        return HttpResponse(status=int(result["statusCode"]), headers=headers, body=body)

    def _gateway_response(
        self,
        response_type: str,
        default_status: int,
        request_id: str,
        message: str,
        detail: str | None = None,
        authorizer: Mapping[str, Any] | None = None,
    ) -> HttpResponse:
        """A response API Gateway makes itself, shaped by the template's GatewayResponses."""
        family = "DEFAULT_4XX" if default_status < 500 else "DEFAULT_5XX"
        spec = self.api.gateway_responses.get(response_type) or self.api.gateway_responses.get(family) or {}
        status = int(spec.get("StatusCode", default_status))
        headers = {"Content-Type": "application/json"}
        for name, value in ((spec.get("ResponseParameters") or {}).get("Headers") or {}).items():
            headers[name] = str(value).strip("'")
        template = (spec.get("ResponseTemplates") or {}).get("application/json")
        if template is None:
            return HttpResponse(status, headers, json.dumps({"message": message}).encode())
        values = {
            "$context.requestId": request_id,
            "$context.error.messageString": json.dumps(message),
            "$context.error.message": message,
            "$context.error.responseType": response_type,
        }
        for key, value in (authorizer or {}).items():
            values[f"$context.authorizer.{key}"] = str(value)
        text = re.sub(
            r"\$context(?:\.[A-Za-z_]+)+",
            lambda m: values.get(m.group(0), ""),
            template,
        )
        if detail:
            headers["X-Local-Error"] = detail[:200].replace("\n", " ")
        headers["X-Request-Id"] = request_id
        return HttpResponse(status, headers, text.encode("utf-8"))
