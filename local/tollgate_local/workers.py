"""Functions run in worker processes, each with its own environment, as Lambda runs each
function in its own execution environment.

A ``Sandbox`` is one spawned process holding one function's handler: it takes one event at
a time, like a Lambda execution environment. ``FunctionWorkers`` keeps a function's sandboxes,
starting them on demand up to a small limit (memory: a sandbox with Powertools, boto3 and
pydantic loaded weighs about 100 MB). ``WorkerPools`` is the ``Invoker`` of the gateway and of
the event sources: it finds a function's pool, made on first use from the template.

A handler's exception, a timeout and a crashed process all become ``FunctionFailed``, which
API Gateway answers with its 5xx gateway response and which leaves SQS messages undeleted.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

from tollgate.settings import Settings
from tollgate_local.gateway import FunctionFailed
from tollgate_local.invoke import Handler, HandlerRef, LocalContext, handler_ref
from tollgate_local.resources import REGION
from tollgate_local.template import (
    REPO_ROOT,
    Resolver,
    function_environment,
    function_properties,
    resources_of_type,
)

# Lambda's layers are unpacked under /opt; a Python layer's files under /opt/python.
LAYER_MOUNT = "/opt/python"
# A shell variable TOLLGATE_FN_<NAME> sets <NAME> in every function (local experiments, e.g.
# TOLLGATE_FN_OLLAMA_BASE_URL), over what the template says.
OVERRIDE_PREFIX = "TOLLGATE_FN_"
DEFAULT_INIT_TIMEOUT = 60.0  # generous: a cold import on a slow laptop or CI runner


def local_only_variables() -> frozenset[str]:
    """The variables ``Settings`` marks local-only (provider keys for local runs, S10): taken
    from the developer's shell, since no template may carry them."""
    return frozenset(
        field.alias
        for field in Settings.model_fields.values()
        if field.alias
        and isinstance(field.json_schema_extra, dict)
        and field.json_schema_extra.get("local_only")
    )


def layer_directories(
    template: Mapping[str, Any], function_id: str, code_root: Path = REPO_ROOT
) -> list[Path]:
    """The local folders of the template's layers this function uses (their ``ContentUri``)."""
    layers = resources_of_type(template, "AWS::Serverless::LayerVersion")
    folders = []
    for layer in function_properties(template, function_id).get("Layers") or []:
        logical_id = layer.get("Ref") if isinstance(layer, dict) else None
        if logical_id in layers:
            content_uri = (layers[logical_id].get("Properties") or {}).get("ContentUri")
            if isinstance(content_uri, str):
                folders.append((code_root / content_uri).resolve())
    return folders


def _localize_layer_path(value: str, layer_dirs: list[Path]) -> str:
    """``/opt/python/x`` (where a layer lives in Lambda) as the layer's folder in the repo."""
    if not layer_dirs or not (value == LAYER_MOUNT or value.startswith(LAYER_MOUNT + "/")):
        return value
    rest = value[len(LAYER_MOUNT) :].lstrip("/")
    for folder in layer_dirs:
        if (folder / rest).exists():
            return str(folder / rest)
    return str(layer_dirs[0] / rest)


def worker_environment(
    template: Mapping[str, Any],
    function_id: str,
    resolver: Resolver,
    aws_endpoint: str,
    *,
    code_root: Path = REPO_ROOT,
    host_environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole ``os.environ`` of a function's worker: what Lambda sets, the template's
    variables (Globals merged, intrinsics resolved), and what points it at the moto server."""
    host = os.environ if host_environ is None else host_environ
    props = function_properties(template, function_id)
    layer_dirs = layer_directories(template, function_id, code_root)
    python_path = [*(str(d) for d in layer_dirs), str(code_root.resolve())]
    environment = {
        # What Lambda's runtime sets, so libraries behave as they do there.
        "PATH": host.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": function_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        # Every boto3 client of the function talks to moto, with fake credentials; the
        # developer's own AWS configuration files are never read.
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        # No X-Ray daemon and no CloudWatch locally.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join(python_path),
        "PYTHONUNBUFFERED": "1",
    }
    for name, value in function_environment(template, function_id, resolver).items():
        environment[name] = _localize_layer_path(value, layer_dirs)
    for name in local_only_variables():
        if host.get(name):
            environment[name] = host[name]
    for name, value in host.items():
        if name.startswith(OVERRIDE_PREFIX) and len(name) > len(OVERRIDE_PREFIX):
            environment[name[len(OVERRIDE_PREFIX) :]] = value
    return environment


@dataclass(frozen=True)
class FunctionSpec:
    """Everything a sandbox needs to run one function."""

    function_id: str
    handler: HandlerRef
    environment: dict[str, str]

    @classmethod
    def from_template(
        cls, template: Mapping[str, Any], function_id: str, resolver: Resolver, aws_endpoint: str
    ) -> FunctionSpec:
        return cls(
            function_id=function_id,
            handler=handler_ref(template, function_id),
            environment=worker_environment(template, function_id, resolver, aws_endpoint),
        )


# -- inside the worker process ---------------------------------------------------------------


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """A failure in the shape Lambda reports it."""
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _sandbox_main(
    connection: Connection, function_id: str, ref: HandlerRef, environment: dict[str, str]
) -> None:
    """The worker process: take the function's environment, import its handler, then answer
    one event at a time until the runtime closes the pipe."""
    # Ctrl-C reaches the whole process group; the runtime decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environment)
    handler: Handler | None = None
    init_error: dict[str, Any] | None = None
    try:
        handler = ref.load()
    except Exception as exc:  # reported on every invoke, as Lambda's Runtime.ImportModuleError
        traceback.print_exc()
        init_error = _error(exc, "Runtime.ImportModuleError")
    connection.send(("ready", None))
    while True:
        try:
            event, request_id = connection.recv()
        except (EOFError, OSError):
            return  # the runtime went away
        if handler is None:
            connection.send(("error", init_error))
            continue
        context = LocalContext(
            function_name=function_id,
            memory_limit_in_mb=ref.memory,
            timeout_seconds=ref.timeout,
            aws_request_id=request_id,
        )
        try:
            # Lambda serializes the answer as JSON: what does not survive that is an error.
            result = json.loads(json.dumps(handler(event, context)))
        except Exception as exc:
            traceback.print_exc()
            connection.send(("error", _error(exc)))
        else:
            connection.send(("ok", result))


# -- in the runtime --------------------------------------------------------------------------


class SandboxLost(Exception):
    """The worker process timed out or died; it must not be used again."""


class Sandbox:
    """One worker process of one function (a Lambda execution environment)."""

    def __init__(self, spec: FunctionSpec, context: SpawnContext, init_timeout: float) -> None:
        self.spec = spec
        self._connection, child = context.Pipe()
        self._process: SpawnProcess = context.Process(
            target=_sandbox_main,
            args=(child, spec.function_id, spec.handler, spec.environment),
            name=f"tollgate-{spec.function_id}",
            # Terminated when the runtime exits; if the runtime is killed, the closed pipe ends it.
            daemon=True,
        )
        self._process.start()
        child.close()
        try:
            self._receive(init_timeout, "Init")
        except SandboxLost:
            self.kill()
            raise

    def _receive(self, timeout: float, phase: str) -> tuple[str, Any]:
        try:
            if not self._connection.poll(timeout):
                raise SandboxLost(f"{phase} timed out after {timeout:.2f} seconds")
            status, payload = self._connection.recv()
        except (EOFError, OSError) as exc:
            code = self._process.exitcode
            raise SandboxLost(f"Runtime.ExitError: the worker process exited ({code})") from exc
        return str(status), payload

    def invoke(self, event: dict[str, Any], timeout: float) -> tuple[str, Any]:
        """Send one event and wait for ``("ok", result)`` or ``("error", lambda_error)``."""
        try:
            self._connection.send((event, str(uuid.uuid4())))
        except (OSError, ValueError) as exc:
            raise SandboxLost("Runtime.ExitError: the worker process is gone") from exc
        return self._receive(timeout, "Task")

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def kill(self) -> None:
        """Stop the process (terminate, then kill if it lingers)."""
        self._connection.close()
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(2)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(2)


class FunctionWorkers:
    """The sandboxes of one function: reused when idle, started on demand up to
    ``max_sandboxes``; further invocations wait for one to be free."""

    def __init__(
        self,
        spec: FunctionSpec,
        max_sandboxes: int,
        context: SpawnContext,
        init_timeout: float = DEFAULT_INIT_TIMEOUT,
    ) -> None:
        self.spec = spec
        self._max = max(1, max_sandboxes)
        self._context = context
        self._init_timeout = init_timeout
        self._idle: list[Sandbox] = []
        self._all: set[Sandbox] = set()
        self._starting = 0
        self._closed = False
        self._condition = threading.Condition()

    @property
    def size(self) -> int:
        """How many sandboxes are alive (idle or busy)."""
        with self._condition:
            return len(self._all)

    def _checkout(self) -> Sandbox:
        with self._condition:
            while True:
                if self._closed:
                    raise FunctionFailed("The local runtime is shutting down")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._starting < self._max:
                    self._starting += 1
                    break
                self._condition.wait()
        # Started outside the lock: a cold start must not hold up the warm sandboxes.
        try:
            sandbox = Sandbox(self.spec, self._context, self._init_timeout)
        except SandboxLost as exc:
            raise FunctionFailed(str(exc)) from exc
        finally:
            with self._condition:
                self._starting -= 1
                self._condition.notify()
        with self._condition:
            if self._closed:
                sandbox.kill()
                raise FunctionFailed("The local runtime is shutting down")
            self._all.add(sandbox)
        return sandbox

    def _checkin(self, sandbox: Sandbox, reusable: bool) -> None:
        with self._condition:
            if reusable and not self._closed:
                self._idle.append(sandbox)
            else:
                self._all.discard(sandbox)
            self._condition.notify()
        if not reusable:
            sandbox.kill()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Run the handler on ``event`` in one of the sandboxes; its result as a dict."""
        sandbox = self._checkout()
        reusable = False
        try:
            status, payload = sandbox.invoke(event, float(self.spec.handler.timeout))
            reusable = True
        except SandboxLost as exc:
            # Lambda throws away an environment that timed out or crashed; so do we.
            raise FunctionFailed(str(exc)) from exc
        finally:
            self._checkin(sandbox, reusable)
        if status != "ok":
            error = payload if isinstance(payload, dict) else {}
            raise FunctionFailed(f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}")
        return payload if isinstance(payload, dict) else {"result": payload}

    def close(self) -> None:
        """Kill every sandbox; later invocations fail."""
        with self._condition:
            self._closed = True
            sandboxes = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._condition.notify_all()
        for sandbox in sandboxes:
            sandbox.kill()


class WorkerPools:
    """The invoker of the local runtime: one ``FunctionWorkers`` per function, made when the
    function is first invoked (functions nobody calls cost no memory)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        resolver: Resolver,
        aws_endpoint: str,
        *,
        max_sandboxes: int = 2,
        init_timeout: float = DEFAULT_INIT_TIMEOUT,
    ) -> None:
        self._template = template
        self._resolver = resolver
        self._endpoint = aws_endpoint
        self._max = max_sandboxes
        self._init_timeout = init_timeout
        # spawn, never fork: a forked child would inherit the runtime's threads and sockets.
        self._context = multiprocessing.get_context("spawn")
        self._pools: dict[str, FunctionWorkers] = {}
        self._lock = threading.Lock()
        self._closed = False

    def pool(self, function_id: str) -> FunctionWorkers:
        """The workers of one function, made on first use."""
        with self._lock:
            if self._closed:
                raise FunctionFailed("The local runtime is shutting down")
            if function_id not in self._pools:
                spec = FunctionSpec.from_template(self._template, function_id, self._resolver, self._endpoint)
                self._pools[function_id] = FunctionWorkers(spec, self._max, self._context, self._init_timeout)
            return self._pools[function_id]

    def __call__(self, function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        return self.pool(function_id).invoke(event)

    def close(self) -> None:
        """Kill every worker process."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()
