"""What a handler's cold start leaves for the requests that need it (docs/architecture.md
"Cold starts"): each import runs in a fresh interpreter, as Lambda would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_CHILD = """
import importlib, importlib.util, json, sys
importlib.import_module(sys.argv[1])
lazy = getattr(importlib.util, "_LazyModule")  # a lazy module not run yet
print(json.dumps(sorted(name for name, module in sys.modules.items() if not isinstance(module, lazy))))
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / p) for p in ("layers/tollgate", ".")),
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "ColdImportTest",  # libraries behave as in Lambda
        "LAMBDA_TASK_ROOT": str(REPO_ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _run_by_importing(module: str) -> set[str]:
    """The modules that ran when ``module`` was imported in a fresh interpreter."""
    out = _run(_CHILD, module)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    ("handler", "left_for_first_use"),
    [
        # boto3 comes with the first AWS client; the message is parsed by the domain
        (
            "functions.image_worker.app",
            {"boto3", "httpx", "tollgate.aws.job_queue", "tollgate.templates.models"},
        ),
        # the conversation and template routes' schemas, and the service behind every route
        (
            "functions.generate.app",
            {
                "boto3",
                "tollgate.api.schemas.conversations",
                "tollgate.api.schemas.template_generate",
                "tollgate.generation.records",
                "tollgate.generation.service",
                "tollgate.metering.models",
            },
        ),
        (
            "functions.images.app",
            {
                "boto3",
                "tollgate.generation.responses",
                "tollgate.metering.pricing",
                "tollgate.templates.models",
            },
        ),
        ("functions.credits.app", {"boto3", "tollgate.metering.models", "tollgate.metering.pricing"}),
        ("functions.usage.app", {"boto3", "tollgate.metering.models"}),
        ("functions.templates.app", {"boto3", "tollgate.metering.pricing"}),
    ],
)
def test_a_handler_import_leaves_what_only_some_requests_need(
    handler: str, left_for_first_use: set[str]
) -> None:
    assert _run_by_importing(handler) & left_for_first_use == set()


def test_a_lazy_module_runs_on_first_use_and_is_the_module_every_import_gets() -> None:
    child = """
import sys
from tollgate.lazy import lazy_module
conversations = lazy_module("tollgate.api.schemas.conversations")
assert "tollgate.conversations.models" not in sys.modules
from tollgate.api.schemas.conversations import ConversationOut
assert "tollgate.conversations.models" in sys.modules
assert conversations.ConversationOut is ConversationOut
assert lazy_module("tollgate.api.schemas.conversations") is conversations
print("ok")
"""
    out = _run(child)
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize(
    "handler",
    [
        "functions.accounts.app",
        "functions.credits.app",
        "functions.generate.app",
        "functions.images.app",
        "functions.templates.app",
        "functions.usage.app",
    ],
)
def test_an_api_handler_imports_only_the_rest_resolver_of_powertools(handler: str) -> None:
    """Powertools' event_handler package would bring every resolver it has (AppSync with
    asyncio and ssl, Bedrock, VPC Lattice): tollgate.api.rest imports the REST one alone."""
    ran = _run_by_importing(handler)
    assert "aws_lambda_powertools.event_handler.api_gateway" in ran
    assert {
        "asyncio",
        "aws_lambda_powertools.event_handler.appsync",
        "aws_lambda_powertools.event_handler.bedrock_agent",
        "aws_lambda_powertools.event_handler.vpc_lattice",
    } & ran == set()


def test_the_deferred_event_handler_package_still_gives_every_name_powertools_documents() -> None:
    child = """
import sys
from tollgate.api.rest import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler import ApiGatewayResolver, CORSConfig
from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import Response as Documented
assert Response is Documented and issubclass(APIGatewayRestResolver, ApiGatewayResolver)
assert content_types.APPLICATION_JSON == "application/json"
assert "aws_lambda_powertools.event_handler.appsync" not in sys.modules
from aws_lambda_powertools.event_handler import AppSyncResolver  # not re-exported lazily: all
import aws_lambda_powertools.event_handler as package
assert AppSyncResolver.__name__ == "AppSyncResolver"
assert set(package.__all__) <= set(dir(package)), set(package.__all__) - set(dir(package))
try:
    from aws_lambda_powertools.event_handler import NoSuchName
except ImportError:
    print("ok")
"""
    out = _run(child)
    assert out.stdout.strip() == "ok", out.stderr


def test_a_package_imported_in_full_before_is_left_as_it_is() -> None:
    child = """
import aws_lambda_powertools.event_handler as package
import tollgate.api.rest as rest
import sys
assert sys.modules["aws_lambda_powertools.event_handler"] is package
assert "__getattr__" not in vars(package) and rest.Response is package.Response
print("ok")
"""
    out = _run(child)
    assert out.stdout.strip() == "ok", out.stderr
