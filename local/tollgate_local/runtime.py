"""The local runtime of S10: the whole of ``template.yaml`` on one laptop.

``python -m tollgate_local`` (with ``PYTHONPATH=layers/tollgate:local:.``):

1. starts moto in server mode on 127.0.0.1 (``TOLLGATE_MOTO_PORT``, default a free port) and
   creates in it every resource of the template (``resources.create_stack``);
2. serves the template's REST API on ``http://127.0.0.1:${TOLLGATE_PORT:-3000}``: routes,
   authorizer with its cache and gateway responses (``gateway.Gateway``), each function run
   in its own worker processes with its own environment (``workers.WorkerPools``);
3. polls every ``SQS`` event source (``sqs.QueuePoller``) and fires every ``Schedule`` /
   ``ScheduleV2`` event (``schedules.Scheduler``);
4. makes the admin key and the demo org (``bootstrap``), prints them with a ready ``curl``,
   writes ``${TOLLGATE_STATE_DIR:-.tollgate}/local.json``, then prints a ``ready`` line.

Routes of the runtime itself (local only, not part of the API):

- ``POST /_local/schedules/{FunctionLogicalId}[?event=EventName]`` fires that function's
  schedules now and answers what each invocation returned;
- ``GET /_local/status`` lists the functions, queues and schedules being served.

Settings (environment): ``TOLLGATE_PORT``, ``TOLLGATE_MOTO_PORT``, ``TOLLGATE_STATE_DIR``,
``TOLLGATE_TEMPLATE`` (default ``template.yaml``), ``TOLLGATE_WORKERS_PER_FUNCTION`` (2),
``TOLLGATE_SQS_WAIT_SECONDS`` (20), ``TOLLGATE_SQS_RETRY_SECONDS`` (unset: a failed message
comes back after the queue's visibility timeout, as in AWS), ``TOLLGATE_ACCESS_LOG`` (1).
Provider keys that ``Settings`` marks local-only (``OPENAI_API_KEY``, ...) pass from the shell to
every function, and ``TOLLGATE_FN_<NAME>=value`` sets ``<NAME>`` in every function.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3

from tollgate_local.bootstrap import STATE_FILE, LocalState, bootstrap, describe
from tollgate_local.gateway import MAX_PAYLOAD_BYTES, ApiDefinition, Gateway, HttpResponse
from tollgate_local.resources import REGION, CreatedStack, create_stack
from tollgate_local.schedules import Scheduler, schedule_sources
from tollgate_local.sqs import QueuePoller, sqs_event_sources
from tollgate_local.template import REPO_ROOT, function_ids, load_template
from tollgate_local.workers import WorkerPools

logger = logging.getLogger("tollgate_local")
HOST = "127.0.0.1"  # never anything else: the runtime has fake credentials and admin routes
LOCAL_PREFIX = "/_local/"


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _int_env(environ: Mapping[str, str], name: str, default: int | None) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {text!r}") from None


@dataclass(frozen=True)
class RuntimeConfig:
    """How the runtime is started; ``from_env`` reads the ``TOLLGATE_*`` variables."""

    port: int = 3000
    moto_port: int | None = None  # None: a free port
    state_dir: Path = REPO_ROOT / ".tollgate"
    template_path: Path = REPO_ROOT / "template.yaml"
    workers_per_function: int = 2
    sqs_wait_seconds: int = 20
    sqs_retry_seconds: int | None = None
    access_log: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeConfig:
        env = os.environ if environ is None else environ
        state_dir = Path(env.get("TOLLGATE_STATE_DIR") or REPO_ROOT / ".tollgate")
        template = Path(env.get("TOLLGATE_TEMPLATE") or REPO_ROOT / "template.yaml")
        return cls(
            port=_int_env(env, "TOLLGATE_PORT", 3000) or 3000,
            moto_port=_int_env(env, "TOLLGATE_MOTO_PORT", None),
            state_dir=state_dir if state_dir.is_absolute() else REPO_ROOT / state_dir,
            template_path=template if template.is_absolute() else REPO_ROOT / template,
            workers_per_function=_int_env(env, "TOLLGATE_WORKERS_PER_FUNCTION", 2) or 2,
            sqs_wait_seconds=_int_env(env, "TOLLGATE_SQS_WAIT_SECONDS", 20) or 0,
            sqs_retry_seconds=_int_env(env, "TOLLGATE_SQS_RETRY_SECONDS", None),
            access_log=env.get("TOLLGATE_ACCESS_LOG", "1") not in ("0", "false", "no"),
        )


class EndpointSession:
    """A boto3 session whose every client talks to one endpoint (the moto server), with fake
    credentials: the developer's AWS configuration is never used."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self._session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
            region_name=REGION,
        )

    def client(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        kwargs.setdefault("region_name", REGION)
        return self._session.client(service, **kwargs)


# -- HTTP --------------------------------------------------------------------------------------


def _json_response(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(body, default=str).encode())


class ApiServer(ThreadingHTTPServer):
    """The HTTP face of the runtime: ``/_local/...`` for the runtime itself, everything else
    through the gateway as API Gateway would."""

    daemon_threads = True  # a slow client never holds up shutdown

    def __init__(
        self,
        port: int,
        gateway: Gateway,
        scheduler: Scheduler | None = None,
        status: Mapping[str, Any] | None = None,
        access_log: bool = True,
    ) -> None:
        self.gateway = gateway
        self.scheduler = scheduler
        self.status = dict(status or {})
        self.access_log = access_log
        super().__init__((HOST, port), _RequestHandler)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a readiness probe, a cancelled request) is not an error worth a
        traceback; anything else is printed as ``socketserver`` does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def local_route(self, method: str, path: str, query: Mapping[str, list[str]]) -> HttpResponse:
        """The runtime's own routes."""
        parts = path[len(LOCAL_PREFIX) :].strip("/").split("/")
        if method == "POST" and len(parts) == 2 and parts[0] == "schedules":
            named = query.get("event")
            event = named[-1] if named else None
            firings = self.scheduler.fire_function(parts[1], event) if self.scheduler else None
            if firings is None:
                return _json_response(404, {"error": f"{parts[1]} has no schedule named so in the template"})
            return _json_response(200, {"fired": [f.as_json() for f in firings]})
        if method == "GET" and parts == ["status"]:
            return _json_response(200, self.status)
        return _json_response(404, {"error": f"no local route {method} {path}"})


class _RequestHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "TollgateLocal"

    def _read_body(self) -> tuple[bytes, bool]:
        """The body, at most one byte over API Gateway's limit (enough for the gateway to
        refuse it); the flag says whether the rest was left unread on the socket."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        wanted = min(length, MAX_PAYLOAD_BYTES + 1)
        return self.rfile.read(wanted), wanted < length

    def _read_chunked(self) -> tuple[bytes, bool]:
        body = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body), False
            if len(body) + size > MAX_PAYLOAD_BYTES + 1:
                body.extend(self.rfile.read(MAX_PAYLOAD_BYTES + 1 - len(body)))
                return bytes(body), True
            body.extend(self.rfile.read(size))
            self.rfile.readline()  # CRLF after each chunk

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        return headers

    def _dispatch(self) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            body, truncated = self._read_body()
        except ValueError:
            self._send(_json_response(400, {"message": "Bad request framing"}), close=True)
            return
        if parts.path.startswith(LOCAL_PREFIX):
            response = self.server.local_route(self.command, parts.path, query)
        else:
            response = self.server.gateway.handle(self.command, parts.path, self._headers(), query, body)
        self._send(response, close=truncated)
        if self.server.access_log:
            elapsed = (time.monotonic() - started) * 1000
            sys.stderr.write(f"{self.command} {parts.path} {response.status} {elapsed:.0f}ms\n")

    def _send(self, response: HttpResponse, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            # The unread rest of an oversized body is still on the socket: end the connection.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def __getattr__(self, name: str) -> Any:
        """Any other method (TRACE, QUERY, ...) still reaches the gateway, which answers it as
        API Gateway does (no such route: the template's problem JSON), never with
        http.server's 501 HTML page."""
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: ``_dispatch`` writes one line per request itself."""


# -- the runtime -------------------------------------------------------------------------------


@dataclass
class LocalRuntime:
    """Everything the runtime runs; ``start`` brings it up, ``stop`` takes it all down."""

    config: RuntimeConfig
    template: dict[str, Any] = field(default_factory=dict)
    moto: Any = None
    session: EndpointSession | None = None
    stack: CreatedStack | None = None
    workers: WorkerPools | None = None
    server: ApiServer | None = None
    scheduler: Scheduler | None = None
    pollers: list[QueuePoller] = field(default_factory=list)
    state: LocalState | None = None

    @property
    def moto_endpoint(self) -> str:
        host, port = self.moto.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> LocalState:
        """Start moto, create the stack, serve the API, start the event sources, bootstrap."""
        self.template = self.template or load_template(self.config.template_path)
        self._start_moto()
        self.session = EndpointSession(self.moto_endpoint)
        self.stack = create_stack(self.template, self.session)
        self.workers = WorkerPools(
            self.template,
            self.stack.resolver,
            self.moto_endpoint,
            max_sandboxes=self.config.workers_per_function,
        )
        self.scheduler = Scheduler(schedule_sources(self.template, self.stack.resolver), self.workers)
        sqs = self.session.client("sqs")
        self.pollers = [
            QueuePoller(
                source,
                sqs,
                self.workers,
                wait_seconds=self.config.sqs_wait_seconds,
                failed_visibility_seconds=self.config.sqs_retry_seconds,
            )
            for source in sqs_event_sources(self.template, self.stack.resolver)
            if source.enabled
        ]
        api = ApiDefinition.from_template(self.template, self.stack.resolver)
        try:
            self.server = ApiServer(
                self.config.port,
                Gateway(api, self.workers),
                self.scheduler,
                self._status(api),
                access_log=self.config.access_log,
            )
        except OSError as exc:
            raise OSError(
                f"the API cannot listen on {HOST}:{self.config.port} (TOLLGATE_PORT): {exc}"
            ) from exc
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        for poller in self.pollers:
            poller.start()
        self.scheduler.start()
        self.state = bootstrap(self.session, self.stack, self.server.base_url, self.config.state_dir)
        return self.state

    def _start_moto(self) -> None:
        # Imported here: moto's server takes seconds to import, and nothing else that imports
        # this module (tests of the HTTP server, say) needs it.
        from moto.server import ThreadedMotoServer

        from tollgate_local.moto_atomic import make_dynamodb_requests_atomic

        port = self.config.moto_port or free_port()
        # ThreadedMotoServer waits forever if its thread cannot bind: find out first.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                raise OSError(f"moto cannot listen on {HOST}:{port} (TOLLGATE_MOTO_PORT): {exc}") from exc
        # Function workers call moto from many threads at once; DynamoDB's per-request atomicity,
        # which the ledger relies on, must hold here as on AWS.
        make_dynamodb_requests_atomic()
        self.moto = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        self.moto.start()

    def _status(self, api: ApiDefinition) -> dict[str, Any]:
        assert self.scheduler is not None
        return {
            "moto": self.moto_endpoint,
            "functions": function_ids(self.template),
            "routes": [f"{r.method} {r.path} -> {r.function_id}" for r in api.routes],
            "queues": [f"{p.source.queue_name} -> {p.source.function_id}" for p in self.pollers],
            "schedules": [
                f"{s.function_id}.{s.event_name} {s.expression.text}{'' if s.enabled else ' (disabled)'}"
                for s in self.scheduler.sources
            ],
        }

    def stop(self) -> None:
        """Stop everything this runtime started, each part even if another fails."""
        for poller in self.pollers:
            poller.request_stop()  # all at once: each notices when its long poll ends
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.workers is not None:
            self.workers.close()
        for poller in self.pollers:
            poller.stop(timeout=0.5)
        if self.moto is not None:
            try:
                self.moto.stop()
            except Exception:  # moto shutting down is not worth a traceback on exit
                logger.debug("moto did not stop cleanly", exc_info=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as SIGINT: both end the runtime through the same ``finally``."""
    raise KeyboardInterrupt


def main() -> int:
    """Run the local runtime until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # moto's server logs every AWS call and httpx every bootstrap request: noise here.
    for chatty in ("werkzeug", "httpx", "botocore", "moto"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    config = RuntimeConfig.from_env()
    runtime = LocalRuntime(config)
    # Installed explicitly: a process started in the background by a shell inherits SIGINT
    # ignored, and Python would then never raise KeyboardInterrupt for it.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            state = runtime.start()
        except OSError as exc:
            print(f"tollgate-local: cannot start: {exc}", file=sys.stderr)
            return 1
        print(describe(state, config.state_dir / STATE_FILE, {"moto": runtime.moto_endpoint}), flush=True)
        print(f"Tollgate local is ready on {state.base_url} (Ctrl-C to stop)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("Stopping Tollgate local...", file=sys.stderr, flush=True)
    finally:
        # A second Ctrl-C must not interrupt the cleanup of worker processes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        runtime.stop()
    return 0
