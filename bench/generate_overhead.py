"""Warm in-process overhead of a mock chat request through the generate handler, and the AWS
calls it makes, cached and uncached (issue 4, the ``bench/`` must-show).

Every resource of ``template.yaml`` is made in moto, in this process, and the generate
function's environment is set as Lambda would set it; an org on the enterprise plan gets
credits. Then ``functions.generate.app.lambda_handler`` is called directly (no gateway, no
authorizer: the authorizer's answer is put in the event, as API Gateway would) with
``POST /v1/chat/completions`` on ``mock/chat``, built from ``events/generate.json``.

After a warm-up, three runs of N requests each:

- uncached, ``cache: {skip: true}``: the cache is not touched (as for any non-deterministic
  request, e.g. a temperature above 0 without a seed);
- a cache miss: a new prompt every time, so the cache is read (miss) and written;
- cached: the same deterministic request again and again, every answer ``X-Cache: HIT``.

For every request: the handler's wall time; the time spent inside AWS calls (every botocore
API call is counted and timed by wrapping ``BaseClient._make_api_call``, so botocore's own
client-side work counts as the AWS call's); and the provider's time (``MockProvider.chat``).
Tollgate's own time is handler - AWS - provider, in wall and in thread CPU time.

The runs are made twice. First with moto answering in this process: moto is slow and does much
work in the same process (parsing, deep copies of the items a transaction touches, garbage),
which pollutes the caches and the garbage collector that Tollgate's code then runs with; so
its time is subtracted but its after-effects are not. Then with ``--aws replay``: each
operation's answer is recorded from moto during the warm-up and given back to the measured
requests without calling moto, as a remote service would answer; that run is the one the goal
is judged on. moto's transactions are patched as the local runtime patches them
(``tollgate_local.moto_atomic``).

Goals (issue 4): p50 under 2 ms of Tollgate CPU beyond the AWS calls; at most 3 AWS calls on
the uncached hot path, at most 2 on the cached one. A cache miss has no call goal of its own:
it is the uncached path (two DynamoDB writes: reserve before the provider, settle after it)
plus the S3 lookup and the S3 store, none of which can be folded into another.

    PYTHONPATH=layers/tollgate:local:. .venv/bin/python bench/generate_overhead.py [-n 300]

Not a test: figures depend on the machine (and on what else it runs at the time).
"""

from __future__ import annotations

import argparse
import copy
import gc
import io
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
FUNCTION_ID = "GenerateFunction"
PLAN = "enterprise"  # 10,000 requests an hour: the runs never meet a rate limit
GOAL_TOLLGATE_P50_MS = 2.0
GOAL_CALLS = {"skip": 3, "cached": 2}

# -- AWS credentials and switches, before any AWS or Powertools import --------------------------

for _name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
)

import boto3  # noqa: E402
import botocore.client  # noqa: E402
import botocore.exceptions  # noqa: E402
from aws_lambda_powertools.utilities import parameters  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402
from figures import Figures, add_json_argument  # noqa: E402
from moto import mock_aws  # noqa: E402

from tollgate import services  # noqa: E402
from tollgate.api.caller import caller_to_context  # noqa: E402
from tollgate.identity.models import Caller, Role  # noqa: E402
from tollgate.metering.models import CREDIT_UNITS  # noqa: E402
from tollgate.providers.mock import MockProvider  # noqa: E402
from tollgate_local.invoke import LocalContext, handler_ref  # noqa: E402
from tollgate_local.moto_atomic import make_dynamodb_requests_atomic  # noqa: E402
from tollgate_local.resources import create_stack  # noqa: E402
from tollgate_local.template import default_template, function_environment, function_ids  # noqa: E402

# -- instruments --------------------------------------------------------------------------------


@dataclass
class Meter:
    """What the current request spent inside AWS calls and inside the provider."""

    aws_calls: list[str] = field(default_factory=list)
    aws_wall: float = 0.0
    aws_cpu: float = 0.0
    provider_wall: float = 0.0
    provider_cpu: float = 0.0
    depth: int = 0

    def clear(self) -> None:
        self.aws_calls = []
        self.aws_wall = self.aws_cpu = self.provider_wall = self.provider_cpu = 0.0


METER = Meter()


_LAYER = f"{os.sep}tollgate{os.sep}"
_ADAPTERS = f"{os.sep}tollgate{os.sep}aws{os.sep}"


def _caller() -> str:
    """Who made the call: the outermost adapter of ``tollgate.aws`` and the domain method
    that called it (e.g. ``metering_store.commit <- reserve``)."""
    frame: FrameType | None = sys._getframe(2)
    adapter = domain = ""
    while frame is not None:
        path, name = frame.f_code.co_filename, frame.f_code.co_name
        if _ADAPTERS in path:
            adapter = f"{Path(path).stem}.{name}"
        elif _LAYER in path and adapter and not name.startswith(("_", "<")) and name != "attempt":
            domain = name
            break
        frame = frame.f_back
    return f"{adapter} <- {domain}" if domain else adapter or "?"


@dataclass
class Replay:
    """AWS answered from what moto answered before (``--aws replay``): each operation's last
    response during the warm-up is recorded, then given back to the measured requests without
    calling moto. moto does a lot of work in this very process (parsing, deep copies of the
    table's items, garbage), which a real AWS service does elsewhere; replaying measures
    Tollgate without that neighbour in its caches and its garbage collector."""

    recording: bool = True
    answers: dict[str, Any] = field(default_factory=dict)
    missing: Counter[str] = field(default_factory=Counter)

    def record(self, operation: str, outcome: Any) -> None:
        if isinstance(outcome, dict) and isinstance(outcome.get("Body"), StreamingBody):
            data = outcome["Body"].read()
            outcome = {**outcome, "Body": data, "_replay_body": True}
        self.answers[operation] = outcome

    def answer(self, operation: str) -> Any:
        outcome = self.answers[operation]
        if isinstance(outcome, BaseException):
            raise copy.copy(outcome)
        if isinstance(outcome, dict) and outcome.get("_replay_body"):
            data = outcome["Body"]
            body = {k: v for k, v in outcome.items() if k != "_replay_body"}
            return {**body, "Body": StreamingBody(io.BytesIO(data), len(data))}
        return copy.deepcopy(outcome)


REPLAY: Replay | None = None


def _instrument_aws() -> None:
    """Count and time every botocore API call (moto answers inside ``_make_api_call``), or in
    replay mode answer it from the recording."""
    original: Callable[..., Any] = botocore.client.BaseClient._make_api_call

    def call_aws(self: Any, operation_name: str, api_params: Any) -> Any:
        replay = REPLAY
        if replay is None:
            return original(self, operation_name, api_params)
        key = f"{self.meta.service_model.service_name}:{operation_name}"
        if not replay.recording and key in replay.answers:
            return replay.answer(key)
        if not replay.recording:
            replay.missing[key] += 1
        try:
            outcome = original(self, operation_name, api_params)
        except botocore.exceptions.ClientError as exc:
            replay.record(key, exc)
            raise
        replay.record(key, outcome)
        return replay.answer(key) if replay.recording else outcome

    def timed(self: Any, operation_name: str, api_params: Any) -> Any:
        if METER.depth:  # a call made while answering another is part of it
            return original(self, operation_name, api_params)
        METER.depth += 1
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            METER.aws_calls.append(f"{self.meta.service_model.service_name}:{operation_name} [{_caller()}]")
            return call_aws(self, operation_name, api_params)
        finally:
            METER.aws_wall += time.perf_counter() - wall
            METER.aws_cpu += time.thread_time() - cpu
            METER.depth -= 1

    botocore.client.BaseClient._make_api_call = timed


def _instrument_provider() -> None:
    """Time the mock provider's own work (its answer and its tiktoken counts)."""
    original = MockProvider.chat

    def timed(self: MockProvider, request: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(self, request)
        finally:
            METER.provider_wall += time.perf_counter() - wall
            METER.provider_cpu += time.thread_time() - cpu

    MockProvider.chat = timed  # type: ignore[method-assign]


# -- the stack, the tenant and the events ---------------------------------------------------------


@contextmanager
def stack() -> Iterator[None]:
    """Every resource of template.yaml in moto, and the generate function's environment."""
    template = default_template()
    undo = make_dynamodb_requests_atomic()  # item backups, not whole-table copies (see there)
    with mock_aws():
        created = create_stack(template, boto3.session.Session(region_name=REGION))
        assert FUNCTION_ID in function_ids(template), f"no {FUNCTION_ID} in template.yaml"
        for name, value in function_environment(template, FUNCTION_ID, created.resolver).items():
            if name != "POWERTOOLS_SERVICE_NAME":
                os.environ[name] = value
        services.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        try:
            yield
        finally:
            services.reset()
            parameters.clear_caches()  # type: ignore[no-untyped-call]
            undo()


def make_tenant() -> Caller:
    """An org on the enterprise plan with 1,000,000 credits; its owner as the caller."""
    admin = Caller(key_id="key_bench_admin", user="admin", role=Role.ADMIN)
    org = services.identity().create_org(admin, "Bench", PLAN)
    services.metering().grant(org.org_id, 1_000_000 * CREDIT_UNITS, note="bench")
    issued = services.identity().issue_key(
        admin, org.org_id, user="bench-owner", name="bench", role=Role.OWNER
    )
    # Exactly the caller the authorizer makes of this key (its org context included).
    return services.identity().authenticate(f"Bearer {issued.plain.value}")


def event_factory(caller: Caller) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``events/generate.json`` with this body, a fresh request id and the authorizer's context."""
    template: dict[str, Any] = json.loads((REPO_ROOT / "events" / "generate.json").read_text())
    template["requestContext"]["authorizer"] = {"principalId": caller.key_id, **caller_to_context(caller)}
    template["headers"].pop("Authorization", None)  # the authorizer has run already

    def make(body: dict[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = copy.deepcopy(template)
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        event["body"] = json.dumps(body)
        return event

    return make


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "mock/chat", "messages": [{"role": "user", "content": text}], "max_tokens": 32, **extra}


# -- the runs ----------------------------------------------------------------------------------


@dataclass
class Sample:
    handler_wall: float
    handler_cpu: float
    aws_wall: float
    aws_cpu: float
    provider_wall: float
    provider_cpu: float
    calls: tuple[str, ...]

    @property
    def tollgate_wall(self) -> float:
        return self.handler_wall - self.aws_wall - self.provider_wall

    @property
    def tollgate_cpu(self) -> float:
        return self.handler_cpu - self.aws_cpu - self.provider_cpu


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def call(handler: Handler, event: dict[str, Any], expect_cache: str) -> Sample:
    context = LocalContext(function_name=FUNCTION_ID)
    METER.clear()
    wall, cpu = time.perf_counter(), time.thread_time()
    result = handler(event, context)
    handler_wall, handler_cpu = time.perf_counter() - wall, time.thread_time() - cpu
    if result.get("statusCode") != 200:
        raise SystemExit(
            f"the handler answered {result.get('statusCode')}: {result.get('body')};"
            f" AWS calls: {METER.aws_calls}"
        )
    headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    headers.update({k.lower(): str(v[-1]) for k, v in (result.get("multiValueHeaders") or {}).items() if v})
    if headers.get("x-cache") != expect_cache:
        raise SystemExit(f"expected X-Cache: {expect_cache}, got {headers.get('x-cache')}")
    return Sample(
        handler_wall,
        handler_cpu,
        METER.aws_wall,
        METER.aws_cpu,
        METER.provider_wall,
        METER.provider_cpu,
        tuple(METER.aws_calls),
    )


def run(
    handler: Handler, bodies: Callable[[int], dict[str, Any]], make: Any, n: int, warmup: int, expect: str
) -> list[Sample]:
    if REPLAY is not None:
        # Replayed writes never reached moto: start each run from moto's state, not from what
        # this process believes it wrote.
        services.reset()
        REPLAY.recording = True
        REPLAY.answers.clear()
    for i in range(warmup):
        call(handler, make(bodies(-1 - i)), expect)
    if REPLAY is not None:
        REPLAY.recording = False
    gc.collect()
    return [call(handler, make(bodies(i)), expect) for i in range(n)]


# -- the report --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def figures_of(runs: dict[str, tuple[str, list[Sample]]], figures: Figures, aws: str) -> None:
    for key, (label, s) in runs.items():
        cpu = [x.tollgate_cpu for x in s]
        section = f"warm overhead, AWS {aws}"
        p50 = percentile(cpu, 50)
        judged = aws == "replayed"
        figures.add(
            section,
            f"{label}: Tollgate CPU p50 / p99",
            f"{ms(p50)} / {ms(percentile(cpu, 99))} ms",
            f"p50 < {GOAL_TOLLGATE_P50_MS:g} ms" if judged else "",
            p50 * 1000 < GOAL_TOLLGATE_P50_MS if judged else None,
        )
        if judged:
            worst = max(len(x.calls) for x in s)
            limit = GOAL_CALLS.get(key)
            figures.add(
                "AWS calls per request",
                label,
                str(worst),
                f"<= {limit}" if limit is not None else "",
                worst <= limit if limit is not None else None,
            )


def report(runs: dict[str, tuple[str, list[Sample]]], *, judge: bool) -> bool:
    rows: list[tuple[str, ...]] = [("", *(label for label, _ in runs.values()))]
    samples = [s for _, s in runs.values()]

    def row(name: str, value: Callable[[list[Sample]], str]) -> None:
        rows.append((name, *(value(s) for s in samples)))

    row("requests", lambda s: str(len(s)))
    row("AWS calls / request (mean)", lambda s: f"{sum(len(x.calls) for x in s) / len(s):.2f}")
    row("AWS calls / request (max)", lambda s: str(max(len(x.calls) for x in s)))

    def percentiles_of(attr: str, q: int) -> Callable[[list[Sample]], str]:
        return lambda s: ms(percentile([getattr(x, attr) for x in s], q))

    for name, attr in (
        ("handler wall", "handler_wall"),
        ("  in AWS calls (moto)", "aws_wall"),
        ("  in provider (mock)", "provider_wall"),
        ("Tollgate wall", "tollgate_wall"),
        ("Tollgate CPU", "tollgate_cpu"),
    ):
        for q in (50, 99):
            row(f"{name} p{q} ms", percentiles_of(attr, q))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r))
        )

    print("\nAWS calls per request, by operation (mean per request; caller in brackets):")
    for label, s in runs.values():
        print(f"  {label}:")
        counts = Counter(c for x in s for c in x.calls)
        for op, count in sorted(counts.items()):
            print(f"    {count / len(s):g} x {op}")

    if not judge:
        return True
    print("\nGoals (issue 4), judged on this table:")
    met_all = True
    for key, (label, s) in runs.items():
        p50 = percentile([x.tollgate_cpu for x in s], 50)
        ok = p50 * 1000 < GOAL_TOLLGATE_P50_MS
        met_all &= ok
        print(
            f"  {label}: Tollgate CPU p50 {ms(p50)} ms, AWS and provider excluded"
            f" (goal < {GOAL_TOLLGATE_P50_MS:g} ms): {'MET' if ok else 'MISSED'}"
        )
        worst = max(len(x.calls) for x in s)
        limit = GOAL_CALLS.get(key)
        if limit is None:
            print(
                f"  {label}: {worst} AWS calls (no goal: the two S3 calls of the lookup and the store"
                f" come on top of the uncached path's {GOAL_CALLS['skip'] - 1} writes)"
            )
            continue
        ok = worst <= limit
        met_all &= ok
        print(f"  {label}: {worst} AWS calls (goal <= {limit}): {'MET' if ok else 'MISSED'}")
    return met_all


def scenarios(handler: Handler, make: Any, n: int, warmup: int) -> dict[str, tuple[str, list[Sample]]]:
    """The three runs: a cache miss (looked up and stored), uncached (``cache.skip``: the cache
    is not touched, as for any non-deterministic request), and a cache hit."""
    tag = uuid.uuid4().hex[:8]  # prompts no earlier run of this process has cached
    runs = {
        "miss": (
            "cache miss (lookup + store)",
            run(handler, lambda i: chat_body(f"Bench {tag} prompt {i}."), make, n, warmup, "MISS"),
        ),
        "skip": (
            "uncached (cache.skip)",
            run(
                handler,
                lambda i: chat_body(f"Bench {tag} skip {i}.", cache={"skip": True}),
                make,
                n,
                warmup,
                "MISS",
            ),
        ),
    }
    same = chat_body(f"Say hello to Tollgate {tag}.", temperature=0)
    call(handler, make(same), "MISS")  # fills the cache
    runs["cached"] = ("cached (HIT)", run(handler, lambda i: same, make, n, warmup, "HIT"))
    return runs


def main(argv: list[str] | None = None) -> int:
    global REPLAY
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--requests", type=int, default=300, help="measured requests per run")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests before each run")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    add_json_argument(parser)
    args = parser.parse_args(argv)

    with stack():
        handler: Handler = handler_ref(default_template(), FUNCTION_ID).load()
        make = event_factory(make_tenant())
        _instrument_aws()
        _instrument_provider()
        started = time.perf_counter()
        with_moto = scenarios(handler, make, args.requests, args.warmup)
        REPLAY = Replay()
        replayed = scenarios(handler, make, args.requests, args.warmup)
        missing = dict(REPLAY.missing)
        REPLAY = None
        elapsed = time.perf_counter() - started

    print(
        f"generate handler, POST /v1/chat/completions on mock/chat, warm, in process;"
        f" Python {sys.version.split()[0]}; {elapsed:.0f} s"
    )
    print("\n== AWS answered by moto, in this process (its time subtracted) ==")
    report(with_moto, judge=False)
    print("\n== AWS answered from a recording of moto's answers (--aws replay) ==")
    if missing:
        print(f"  (operations not recorded, answered by moto: {missing})")
    met = report(replayed, judge=True)
    figures = Figures()
    figures_of(with_moto, figures, "by moto in process")
    figures_of(replayed, figures, "replayed")
    figures.write(args.json)
    return 0 if met or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
