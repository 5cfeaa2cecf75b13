"""The API-key Lambda authorizer (REST API, REQUEST type).

It turns ``Authorization: Bearer tg_...`` into the caller {key_id, org_id, user, role, plan}
that every function reads from the request context. API Gateway caches the answer per
``Authorization`` header for the TTL set in ``template.yaml``, so revocation takes effect
within that TTL.

A refused key gets a Deny policy whose context carries the reason; the template's
``ACCESS_DENIED`` gateway response turns it into a ``401`` problem JSON.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services
from tollgate.api.caller import caller_to_context
from tollgate.errors import Unauthorized

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)


def _api_wildcard(method_arn: str) -> str:
    """``arn:...:api-id/stage/*/*``: the cached policy must cover every route, not just this one."""
    parts = method_arn.split("/")
    return "/".join([*parts[:2], "*", "*"]) if len(parts) >= 2 else method_arn


def _policy(principal: str, effect: str, method_arn: str, context: dict[str, str]) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": _api_wildcard(method_arn)}
            ],
        },
        "context": context,
    }


def _authorization_header(event: dict[str, Any]) -> str | None:
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "authorization":
            return str(value)
    return None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    method_arn = str(event.get("methodArn", ""))
    try:
        caller = services.identity().authenticate(_authorization_header(event))
    except Unauthorized as refused:
        logger.info("API key refused", extra={"reason": refused.detail})
        return _policy("anonymous", "Deny", method_arn, {"code": refused.code, "detail": refused.detail})
    return _policy(caller.key_id, "Allow", method_arn, caller_to_context(caller))
