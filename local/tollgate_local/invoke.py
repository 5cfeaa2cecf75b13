"""Running a function's handler as Lambda would: a context object, and the handler found from
the template's ``CodeUri`` and ``Handler`` (``functions/accounts/`` + ``app.lambda_handler`` is
``functions.accounts.app:lambda_handler``)."""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tollgate_local.resources import ACCOUNT, REGION
from tollgate_local.template import function_properties

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    """The attributes of a Lambda context that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 29
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._started + self.timeout_seconds - time.monotonic()) * 1000))


@dataclass(frozen=True)
class HandlerRef:
    module: str
    attribute: str
    timeout: int
    memory: int

    def load(self) -> Handler:
        return getattr(importlib.import_module(self.module), self.attribute)  # type: ignore[no-any-return]


def handler_ref(template: Mapping[str, Any], function_id: str) -> HandlerRef:
    props = function_properties(template, function_id)
    code_uri = str(props["CodeUri"]).strip("/").replace("/", ".")
    module, attribute = str(props["Handler"]).rsplit(".", 1)
    return HandlerRef(
        module=f"{code_uri}.{module}" if code_uri and code_uri != "." else module,
        attribute=attribute,
        timeout=int(props.get("Timeout", 3)),
        memory=int(props.get("MemorySize", 128)),
    )


def in_process_invoker(template: Mapping[str, Any]) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """Invoke handlers in this process (integration tests). Exceptions become ``FunctionFailed``,
    as a Lambda error becomes API Gateway's 502."""
    import copy

    from tollgate_local.gateway import FunctionFailed

    handlers: dict[str, tuple[Handler, HandlerRef]] = {}

    def invoke(function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        if function_id not in handlers:
            ref = handler_ref(template, function_id)
            handlers[function_id] = (ref.load(), ref)
        handler, ref = handlers[function_id]
        context = LocalContext(
            function_name=function_id, memory_limit_in_mb=ref.memory, timeout_seconds=ref.timeout
        )
        try:
            result = handler(copy.deepcopy(event), context)
        except Exception as exc:
            raise FunctionFailed(f"{type(exc).__name__}: {exc}") from exc
        return result if isinstance(result, dict) else {"result": result}

    return invoke
