"""Cold import time of every function's handler module, beside a bare ``import boto3``.

For each ``AWS::Serverless::Function`` of ``template.yaml``, fresh interpreters import its handler
module with the function's environment (Globals merged, intrinsics replaced by placeholder names,
``TIKTOKEN_CACHE_DIR`` pointing at the shipped encodings, Lambda's own variables set) and report
how long the import took. The median of several runs is compared with the median of a bare
``import boto3``. Goal: no handler above 1.5x that baseline. Sockets are blocked in every child,
so a handler that touches the network at import time shows up as an error.

When a handler misses the goal, ``python -X importtime`` names what its import spends time on.
Then the tiktoken encodings are loaded from the shipped files with the network blocked.

    make bench
    .venv/bin/python bench/cold_imports.py --runs 7 [--no-pyc | --sam-build .aws-sam/build] [--strict]

``--no-pyc`` compiles every module from source (stdlib included). ``--sam-build DIR`` imports
the handler as Lambda does, from ``sam build``'s output: the function folder and the layer on
the path, no venv, boto3 from the layer, bytecode only if the build ships it (plain ``sam build``
ships none; ``make sam-build`` adds it).
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from figures import Figures, add_json_argument

from tollgate.tokens import SHIPPED_CACHE_DIR
from tollgate_local.invoke import handler_ref
from tollgate_local.template import (
    Resolver,
    function_environment,
    function_ids,
    function_properties,
    load_template,
    parameter_defaults,
    resources_of_type,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.5
REGION = "us-east-1"

# Runs in each fresh interpreter: blocks the network, imports argv[1], prints milliseconds.
_GUARD = """
import socket
def _refuse(*args, **kwargs):
    raise OSError("network blocked by bench/cold_imports.py")
socket.socket.connect = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""
_IMPORT_CHILD = (
    _GUARD
    + """
import importlib, sys, time
start = time.perf_counter()
importlib.import_module(sys.argv[1])
imported = time.perf_counter()
from tollgate.aws.clients import trace_aws_calls
import boto3
trace_aws_calls()
print(f"{(imported - start) * 1000:.3f} {(time.perf_counter() - start) * 1000:.3f}")
"""
)
_TIKTOKEN_CHILD = (
    _GUARD
    + """
import sys, time
start = time.perf_counter()
from tollgate.tokens import count_tokens, encoding_for
imported = time.perf_counter()
encoding = encoding_for(sys.argv[1])
loaded = time.perf_counter()
assert count_tokens("hello world", sys.argv[1]) == 2
print(f"{(imported - start) * 1000:.3f} {(loaded - imported) * 1000:.3f} {encoding.n_vocab}")
"""
)


class _PlaceholderResolver(Resolver):
    """Every Ref and GetAtt resolves to a plausible placeholder: no AWS, no moto needed."""

    def _ref(self, name: str) -> Any:
        return self.refs.get(name, f"tollgate-bench-{name.lower()}")

    def _att(self, logical_id: str, attribute: str) -> Any:
        return f"arn:aws:bench:{REGION}:123456789012:{logical_id.lower()}/{attribute.lower()}"


@dataclass
class Target:
    label: str
    module: str
    env: dict[str, str]
    python: list[str] = field(default_factory=lambda: [sys.executable])
    samples: list[float] = field(default_factory=list)
    # import + what the first AWS call adds (boto3, X-Ray's botocore patch): shown, not judged
    with_sdk: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def _base_env(pythonpath: list[Path], tiktoken_dir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "SYSTEMROOT") if name in os.environ}
    env.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath),
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - placeholder, nothing is called
        AWS_EXECUTION_ENV="AWS_Lambda_python3.11",
        TIKTOKEN_CACHE_DIR=str(tiktoken_dir),
    )
    return env


@dataclass(frozen=True)
class Mode:
    """How the children find and load code: from the repository (bytecode cached, or compiled
    from source), or from ``sam build``'s output as Lambda lays it out."""

    description: str
    python: list[str]
    extra_env: dict[str, str]
    sam_build: Path | None = None
    warm_up: bool = False

    def code_path(self, template: dict[str, Any], function_id: str | None) -> list[Path]:
        if self.sam_build is None:
            return [REPO_ROOT / p for p in ("layers/tollgate", "local", ".")]
        layers = [
            self.sam_build / layer / "python"
            for layer in resources_of_type(template, "AWS::Serverless::LayerVersion")
        ]
        return ([self.sam_build / function_id] if function_id else []) + layers

    def tiktoken_dir(self, template: dict[str, Any]) -> Path:
        if self.sam_build is None:
            return SHIPPED_CACHE_DIR
        return self.code_path(template, None)[0] / "tollgate" / "tokens" / "tiktoken_cache"

    def module(self, template: dict[str, Any], function_id: str) -> str:
        if self.sam_build is None:
            return handler_ref(template, function_id).module
        return str(function_properties(template, function_id)["Handler"]).rsplit(".", 1)[0]


def targets_from_template(template: dict[str, Any], mode: Mode) -> list[Target]:
    resolver = _PlaceholderResolver(refs={**parameter_defaults(template), "AWS::Region": REGION})
    tiktoken_dir = mode.tiktoken_dir(template)
    baseline_env = {**_base_env(mode.code_path(template, None), tiktoken_dir), **mode.extra_env}
    targets = [Target("(baseline)", "boto3", baseline_env, mode.python)]
    for function_id in function_ids(template):
        props = function_properties(template, function_id)
        env = _base_env(mode.code_path(template, function_id), tiktoken_dir)
        env.update(function_environment(template, function_id, resolver))
        env.update(mode.extra_env)
        env["TIKTOKEN_CACHE_DIR"] = str(tiktoken_dir)  # the template's /opt path, here
        env["AWS_LAMBDA_FUNCTION_NAME"] = function_id
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(props.get("MemorySize", 128))
        # Libraries behave as in Lambda when this is set (X-Ray then samples locally instead of
        # building a botocore client at import time).
        task_root = mode.sam_build / function_id if mode.sam_build else REPO_ROOT / str(props["CodeUri"])
        env["LAMBDA_TASK_ROOT"] = str(task_root)
        targets.append(Target(function_id, mode.module(template, function_id), env, mode.python))
    return targets


def measure_once(target: Target) -> None:
    result = subprocess.run(
        [*target.python, "-c", _IMPORT_CHILD, target.module],
        env=target.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        target.error = lines[-1] if lines else f"exit {result.returncode}"
        return
    imported, with_sdk = result.stdout.strip().splitlines()[-1].split()
    target.samples.append(float(imported))
    target.with_sdk.append(float(with_sdk))


Ranking = list[tuple[str, float]]


def importtime_offenders(target: Target, top: int) -> tuple[Ranking, Ranking, Ranking]:
    """Self time by top-level package, and the project's own modules by cumulative and by self
    time, in ms (top ``top`` of each)."""
    result = subprocess.run(
        [*target.python, "-X", "importtime", "-c", f"import {target.module}"],
        env=target.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    by_package: dict[str, float] = defaultdict(float)
    own: dict[str, float] = {}
    own_self: dict[str, float] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if not match:
            continue
        self_us, cumulative_us, module = int(match[1]), int(match[2]), match[4]
        by_package[module.split(".")[0]] += self_us / 1000
        if module.split(".")[0] in ("tollgate", "functions"):
            own[module] = cumulative_us / 1000
            own_self[module] = self_us / 1000

    def ranked(times: dict[str, float]) -> Ranking:
        return sorted(times.items(), key=lambda item: -item[1])[:top]

    return ranked(by_package), ranked(own), ranked(own_self)


def print_table(targets: list[Target], runs: int, mode: str) -> list[Target]:
    baseline = targets[0]
    print(f"\nCold import of each handler module: median of {runs} fresh interpreters, {mode}")
    print(
        f"{'function':<22} {'module':<32} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'x boto3':>8}"
        f" {'+SDK ms':>9} {'x boto3':>8}"
    )
    print("-" * 110)
    over: list[Target] = []
    for target in targets:
        if target.error or not target.samples:
            print(f"{target.label:<22} {target.module:<32} {'ERROR':>10}  {target.error}")
            continue
        ratio = target.median / baseline.median if baseline.samples else float("nan")
        sdk = statistics.median(target.with_sdk)
        flag = "  <- over goal" if target is not baseline and ratio > GOAL_RATIO else ""
        with_sdk = f"{'':>9} {'':>8}" if target is baseline else f"{sdk:>9.1f} {sdk / baseline.median:>8.2f}"
        print(
            f"{target.label:<22} {target.module:<32} {target.median:>10.1f} {min(target.samples):>8.1f} "
            f"{max(target.samples):>8.1f} {ratio:>8.2f} {with_sdk}{flag}"
        )
        if flag:
            over.append(target)
    print("-" * 110)
    print(
        "+SDK: the import, then what the first AWS call adds (import boto3, X-Ray's botocore patch):\n"
        "handlers load the AWS SDK on first use, so a request that needs no AWS call never pays it."
    )
    verdict = "met" if not over else "MISSED by " + ", ".join(t.label for t in over)
    print(f"Goal: no handler above {GOAL_RATIO}x the `import boto3` baseline: {verdict}")
    return over


def figures_of(targets: list[Target], mode: str, figures: Figures) -> None:
    baseline = targets[0]
    section = f"cold import ({mode})"
    figures.add(section, "import boto3 (baseline)", f"{baseline.median:.0f} ms")
    for target in targets[1:]:
        if target.error or not target.samples:
            figures.add(section, target.label, f"ERROR {target.error}", f"<= {GOAL_RATIO}x boto3", False)
            continue
        ratio = target.median / baseline.median
        sdk = statistics.median(target.with_sdk) / baseline.median
        figures.add(
            section,
            target.label,
            f"{target.median:.0f} ms = {ratio:.2f}x boto3 (with the SDK's first use: {sdk:.2f}x)",
            f"<= {GOAL_RATIO}x boto3",
            ratio <= GOAL_RATIO,
        )


def bench_tiktoken(runs: int, figures: Figures | None = None) -> None:
    print(f"\ntiktoken encodings from the shipped files, network blocked (median of {runs} interpreters)")
    print(f"  TIKTOKEN_CACHE_DIR={SHIPPED_CACHE_DIR}")
    env = _base_env([REPO_ROOT / p for p in ("layers/tollgate", "local", ".")], SHIPPED_CACHE_DIR)
    for encoding in ("cl100k_base", "o200k_base"):
        imports: list[float] = []
        loads: list[float] = []
        vocab = "?"
        for _ in range(runs):
            result = subprocess.run(
                [sys.executable, "-c", _TIKTOKEN_CHILD, encoding],
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                print(f"  {encoding}: FAILED: {result.stderr.strip().splitlines()[-1:]}")
                break
            imported, loaded, vocab = result.stdout.split()
            imports.append(float(imported))
            loads.append(float(loaded))
        else:
            if figures is not None:
                figures.add(
                    "tiktoken",
                    f"{encoding} loaded from the shipped file, network blocked",
                    f"{statistics.median(loads):.0f} ms",
                )
            print(
                f"  {encoding:<12} import tollgate.tokens {statistics.median(imports):6.1f} ms, "
                f"load encoding {statistics.median(loads):6.1f} ms ({vocab} tokens), 'hello world' = 2 tokens"
            )


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per module (default 7)")
    parser.add_argument("--no-pyc", action="store_true", help="compile all modules from source, as Lambda")
    parser.add_argument("--top", type=int, default=8, help="offenders listed per slow handler")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the goal is missed")
    parser.add_argument(
        "--sam-build",
        type=Path,
        metavar="DIR",
        help="import from `sam build` output (e.g. .aws-sam/build) as Lambda does: the function "
        "folder and the layer on the path, no venv, bytecode only if the build ships it",
    )
    add_json_argument(parser)
    args = parser.parse_args()
    figures = Figures()

    template = load_template()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as empty:
        read_only = {"PYTHONDONTWRITEBYTECODE": "1"}
        if args.sam_build:
            build = args.sam_build.resolve()
            mode = Mode(
                f"from {build} (no venv, .pyc only if shipped)", [sys.executable, "-S"], read_only, build
            )
        elif args.no_pyc:
            # An empty pycache prefix, never written, makes every import compile from source.
            mode = Mode(
                "compiled from source (no .pyc)", [sys.executable, "-X", f"pycache_prefix={empty}"], read_only
            )
        else:
            mode = Mode("bytecode cached (.pyc)", [sys.executable], {}, warm_up=True)
        targets = targets_from_template(template, mode)
        if mode.warm_up:
            for target in targets:  # writes the .pyc files; not counted
                measure_once(target)
                target.samples.clear()
        for _ in range(args.runs):  # interleaved, so drift hits every target alike
            for target in targets:
                if target.error is None:
                    measure_once(target)
    over = print_table(targets, args.runs, mode.description)
    figures_of(targets, "sam build" if args.sam_build else "repository", figures)

    for target in over:
        packages, own, own_self = importtime_offenders(target, args.top)
        print(f"\n{target.label}: where `import {target.module}` spends its time (python -X importtime)")
        print("  self time by top-level package:")
        for name, ms in packages:
            print(f"    {name:<28} {ms:7.1f} ms")
        print("  the project's own modules by cumulative time (what they pull in):")
        for name, ms in own:
            print(f"    {name:<44} {ms:7.1f} ms")
        print("  the project's own modules by self time (their own top-level code):")
        for name, ms in own_self:
            print(f"    {name:<44} {ms:7.1f} ms")

    bench_tiktoken(args.runs, figures)
    figures.write(args.json)
    return 1 if args.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
