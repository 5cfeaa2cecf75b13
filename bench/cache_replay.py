"""The response cache's effect on cost for a replayed workload with repeats (issue 8).

A workload of W chat requests over P distinct deterministic prompts, drawn with a Zipf-like
skew (a few prompts are asked again and again, as an app's common questions are), seeded so
every run replays the same sequence, is sent through the generate handler twice, by two orgs
on the same plan: once as is (the exact cache of S12 answers repeats), once with
``cache: {skip: true}`` on every request (every request goes to the provider). For each: the
provider calls made, the provider cost and the credits charged (from the usage log and the
ledger, to the unit), and the cache hit rate. The difference is what the cache saved.

The provider is ``mock/chat`` (deterministic; priced in ``data/prices.toml``), AWS is moto in
process, the environment is the generate function's (see ``bench/generate_overhead.py``).

    PYTHONPATH=layers/tollgate:local:. .venv/bin/python bench/cache_replay.py [--requests 400]

Not a test: the figures depend on the workload's shape, which is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import generate_overhead as harness  # the stack, the tenant and the events of the overhead bench
from figures import Figures, add_json_argument

from tollgate import services
from tollgate.credits.amounts import credits_of_units, usd_of_micro
from tollgate.identity.models import Caller
from tollgate.providers.mock import MockProvider
from tollgate_local.invoke import LocalContext, handler_ref
from tollgate_local.template import default_template


@dataclass
class Outcome:
    label: str
    requests: int
    provider_calls: int
    hits: int
    cost_micro_usd: int
    credits: int


def workload(requests: int, prompts: int, skew: float, seed: int) -> list[int]:
    """Which prompt each request asks, Zipf-like: prompt k is asked in proportion to 1/k^skew."""
    rng = random.Random(seed)
    weights = [1 / (k**skew) for k in range(1, prompts + 1)]
    return rng.choices(range(prompts), weights=weights, k=requests)


def run(label: str, sequence: list[int], *, skip: bool) -> Outcome:
    handler = handler_ref(default_template(), harness.FUNCTION_ID).load()
    caller: Caller = harness.make_tenant()
    assert caller.org_id is not None
    make = harness.event_factory(caller)
    before = services.metering().balance(caller.org_id).balance
    calls = Counter[str]()
    original = MockProvider.chat

    def counted(self: MockProvider, request: Any) -> Any:
        calls["chat"] += 1
        return original(self, request)

    MockProvider.chat = counted  # type: ignore[method-assign]
    hits = 0
    try:
        for prompt in sequence:
            extra: dict[str, Any] = {"temperature": 0}
            if skip:
                extra["cache"] = {"skip": True}
            body = harness.chat_body(f"Common question number {prompt}: what does it cost?", **extra)
            result = handler(make(body), LocalContext(function_name=harness.FUNCTION_ID))
            if result.get("statusCode") != 200:
                raise SystemExit(
                    f"{label}: the handler answered {result.get('statusCode')}: {result.get('body')}"
                )
            headers = {k.lower(): v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}
            hits += headers.get("x-cache") == "HIT"
    finally:
        MockProvider.chat = original  # type: ignore[method-assign]
    logs = services.usage_log().day(caller.org_id, datetime.now(UTC).strftime("%Y-%m-%d"))
    charged = before - services.metering().balance(caller.org_id).balance
    if sum(entry.credits for entry in logs) != charged:
        raise SystemExit(f"{label}: the usage log's credits differ from the ledger's")
    return Outcome(label, len(sequence), calls["chat"], hits, sum(e.cost_micro_usd for e in logs), charged)


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--prompts", type=int, default=80, help="distinct prompts in the workload")
    parser.add_argument("--skew", type=float, default=1.1, help="Zipf exponent of the prompts' popularity")
    parser.add_argument("--seed", type=int, default=42)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    sequence = workload(args.requests, args.prompts, args.skew, args.seed)
    distinct = len(set(sequence))
    # The handlers' EMF metrics go to stdout, as in Lambda: kept out of this report.
    with harness.stack(), contextlib.redirect_stdout(io.StringIO()):
        cached = run("with the cache", sequence, skip=False)
        uncached = run("cache skipped", sequence, skip=True)
    shape = f"{args.requests} requests, {distinct} distinct prompts (Zipf {args.skew:g}, seed {args.seed})"
    print(f"replayed workload: {shape}; mock/chat, temperature 0; Python {sys.version.split()[0]}")
    for outcome in (cached, uncached):
        rate = outcome.hits / outcome.requests
        print(
            f"  {outcome.label:<16} provider calls {outcome.provider_calls:>5}, cache hits {outcome.hits:>5}"
            f" ({rate:.0%}), provider cost ${usd_of_micro(outcome.cost_micro_usd)},"
            f" credits charged {credits_of_units(outcome.credits)}"
        )
    saved_cost = 1 - cached.cost_micro_usd / uncached.cost_micro_usd if uncached.cost_micro_usd else 0.0
    saved_credits = 1 - cached.credits / uncached.credits if uncached.credits else 0.0
    print(
        f"  the cache saved {uncached.provider_calls - cached.provider_calls} provider calls, "
        f"{saved_cost:.0%} of the provider cost and {saved_credits:.0%} of the credits"
    )
    figures = Figures()
    section = f"cache effect, {shape}"
    figures.add(section, "cache hit rate", f"{cached.hits / cached.requests:.0%}")
    calls = f"{cached.provider_calls} / {uncached.provider_calls}"
    figures.add(section, "provider calls: cached / skipped", calls)
    cost = f"${usd_of_micro(cached.cost_micro_usd)} / ${usd_of_micro(uncached.cost_micro_usd)}"
    figures.add(section, "provider cost: cached / skipped", f"{cost} ({saved_cost:.0%} saved)")
    credits = f"{credits_of_units(cached.credits)} / {credits_of_units(uncached.credits)}"
    figures.add(section, "credits charged: cached / skipped", f"{credits} ({saved_credits:.0%} saved)")
    figures.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
