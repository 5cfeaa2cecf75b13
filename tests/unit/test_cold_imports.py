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
