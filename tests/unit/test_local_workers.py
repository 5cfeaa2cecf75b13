"""The local runtime's worker processes: each function in its own processes, with its own
environment; failures, timeouts and crashes as Lambda reports them.

The functions of the template below are handlers of this very module, run in spawned
processes (the template reader takes any dict: no change to template.yaml)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tollgate_local.gateway import FunctionFailed
from tollgate_local.template import REPO_ROOT, Resolver
from tollgate_local.workers import WorkerPools, local_only_variables, worker_environment

ENDPOINT = "http://127.0.0.1:1"


def _function(handler: str, **extra: Any) -> dict[str, Any]:
    who = extra.pop("who", handler)
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "tests/unit/",
            "Handler": f"test_local_workers.{handler}",
            "Environment": {"Variables": {"WHO": who}},
            **extra,
        },
    }


TEMPLATE: dict[str, Any] = {
    "Globals": {
        "Function": {
            "Timeout": 10,
            "MemorySize": 256,
            "Layers": [{"Ref": "SharedLayer"}],
            "Environment": {
                "Variables": {
                    "TABLE_NAME": {"Ref": "Table"},
                    "TIKTOKEN_CACHE_DIR": "/opt/python/tollgate/data",
                }
            },
        }
    },
    "Resources": {
        "SharedLayer": {
            "Type": "AWS::Serverless::LayerVersion",
            "Properties": {"ContentUri": "layers/tollgate/"},
        },
        "EchoFunction": _function("echo_handler", who="echo"),
        "OtherFunction": _function("echo_handler", who="other"),
        "SlowFunction": _function("echo_handler", who="slow", Timeout=1),
        "BrokenFunction": _function("no_such_handler"),
    },
}


def echo_handler(event: dict[str, Any], context: Any) -> Any:
    """The test function: answers its pid and environment, or misbehaves on request."""
    if event.get("raise"):
        raise RuntimeError(event["raise"])
    if event.get("sleep"):
        time.sleep(float(event["sleep"]))
    if event.get("exit"):
        os._exit(3)
    if event.get("unserializable"):
        return {"value": object()}
    return {
        "pid": os.getpid(),
        "env": {name: os.environ.get(name) for name in event.get("env", [])},
        "function": context.function_name,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


@pytest.fixture(scope="module")
def pools() -> Iterator[WorkerPools]:
    workers = WorkerPools(TEMPLATE, Resolver(refs={"Table": "local-table"}), ENDPOINT, max_sandboxes=2)
    yield workers
    workers.close()


def test_the_environment_is_the_functions_own_with_moto_and_fake_credentials() -> None:
    # Given a host shell with a provider key and an unrelated secret
    host = {
        "PATH": "/usr/bin",
        "OPENAI_API_KEY": "sk-test",
        "MY_PRIVATE_TOKEN": "nope",
        "AWS_PROFILE": "prod",
        "TOLLGATE_FN_WHO": "overridden",
    }
    # When
    env = worker_environment(
        TEMPLATE, "EchoFunction", Resolver(refs={"Table": "t1"}), ENDPOINT, host_environ=host
    )
    # Then the template's variables are resolved, Globals merged
    assert env["TABLE_NAME"] == "t1"
    # (a TOLLGATE_FN_ variable of the shell overrides a function's own)
    assert env["WHO"] == "overridden"
    # and every AWS call goes to moto with fake credentials, never to the developer's account
    assert env["AWS_ENDPOINT_URL"] == ENDPOINT
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_CONFIG_FILE"] == os.devnull
    assert "AWS_PROFILE" not in env
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["POWERTOOLS_METRICS_DISABLED"] == "true"
    # and the layer and the code are importable
    path = env["PYTHONPATH"].split(os.pathsep)
    assert str(REPO_ROOT / "layers" / "tollgate") in path
    assert str(REPO_ROOT) in path
    # and a layer path of Lambda (/opt/python) points into the repository's layer folder
    assert Path(env["TIKTOKEN_CACHE_DIR"]) == REPO_ROOT / "layers" / "tollgate" / "tollgate" / "data"
    # and only the provider keys Settings marks local-only pass through from the shell
    assert "OPENAI_API_KEY" in local_only_variables()
    assert env["OPENAI_API_KEY"] == "sk-test"
    assert "MY_PRIVATE_TOKEN" not in env


def test_each_function_runs_in_its_own_process_with_its_own_environment(pools: WorkerPools) -> None:
    # When
    echo = pools("EchoFunction", {"env": ["WHO", "TABLE_NAME", "AWS_ENDPOINT_URL"]})
    other = pools("OtherFunction", {"env": ["WHO"]})
    # Then
    assert echo["env"] == {"WHO": "echo", "TABLE_NAME": "local-table", "AWS_ENDPOINT_URL": ENDPOINT}
    assert other["env"] == {"WHO": "other"}
    assert len({echo["pid"], other["pid"], os.getpid()}) == 3
    assert "WHO" not in os.environ
    assert echo["function"] == "EchoFunction"
    assert 0 < echo["remaining_ms"] <= 10_000


def test_a_warm_sandbox_is_reused(pools: WorkerPools) -> None:
    first = pools("EchoFunction", {})
    second = pools("EchoFunction", {})
    assert first["pid"] == second["pid"]
    assert first["request_id"] != second["request_id"]


def test_a_handler_exception_is_a_function_failure_and_the_sandbox_lives_on(pools: WorkerPools) -> None:
    before = pools("EchoFunction", {})["pid"]
    with pytest.raises(FunctionFailed, match="RuntimeError: boom"):
        pools("EchoFunction", {"raise": "boom"})
    assert pools("EchoFunction", {})["pid"] == before


def test_an_answer_that_is_not_json_is_a_function_failure(pools: WorkerPools) -> None:
    with pytest.raises(FunctionFailed, match="TypeError"):
        pools("EchoFunction", {"unserializable": True})


def test_a_timeout_fails_the_invocation_and_replaces_the_sandbox(pools: WorkerPools) -> None:
    # Given a function with Timeout: 1
    before = pools("SlowFunction", {})["pid"]
    # When it runs longer
    started = time.monotonic()
    with pytest.raises(FunctionFailed, match=r"timed out after 1\.00 seconds"):
        pools("SlowFunction", {"sleep": 5})
    # Then the caller was answered on time, and the next call gets a fresh process
    assert time.monotonic() - started < 3
    assert pools("SlowFunction", {})["pid"] != before


def test_a_crashed_process_is_a_function_failure_and_is_replaced(pools: WorkerPools) -> None:
    before = pools("EchoFunction", {})["pid"]
    with pytest.raises(FunctionFailed, match=r"Runtime\.ExitError"):
        pools("EchoFunction", {"exit": True})
    assert pools("EchoFunction", {})["pid"] != before


def test_a_handler_that_cannot_be_imported_fails_every_invocation(pools: WorkerPools) -> None:
    with pytest.raises(FunctionFailed, match=r"Runtime\.ImportModuleError"):
        pools("BrokenFunction", {})


def test_concurrent_invocations_share_at_most_the_allowed_sandboxes(pools: WorkerPools) -> None:
    # Given a limit of 2 sandboxes per function, and 5 invocations at once
    results: list[dict[str, Any]] = []

    def call() -> None:
        results.append(pools("OtherFunction", {"sleep": 0.3}))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then all were answered, by no more than 2 processes
    assert len(results) == 5
    assert len({r["pid"] for r in results}) <= 2
    assert pools.pool("OtherFunction").size <= 2


def test_closing_kills_the_workers_and_refuses_new_invocations() -> None:
    workers = WorkerPools(TEMPLATE, Resolver(refs={"Table": "t"}), ENDPOINT, max_sandboxes=1)
    pid = workers("EchoFunction", {})["pid"]
    workers.close()
    with pytest.raises(FunctionFailed, match="shutting down"):
        workers("EchoFunction", {})
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; the runtime reaps it when joining.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())
