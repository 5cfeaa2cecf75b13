"""Every benchmark of ``bench/``, run one after the other, and one table of their figures.

    make bench                                         # print the table
    make bench BENCH_ARGS="--markdown docs/performance.md"   # and write it there

Runs, each in its own interpreter (each prints its own detailed report too, shown with
``--verbose``): cold imports per handler against ``import boto3`` (from ``sam build``'s output
when it exists, as Lambda imports it; else from the repository) and tiktoken's loads;
the warm overhead and the AWS calls of a chat request through the generate handler; concurrent
reservations per second against a moto server, with their correctness; tiktoken's tokens per
second; the cache's effect on cost for a replayed workload with repeats. The table says what was
measured, the figure, the goal when there is one, and whether it was met, followed by the
machine it ran on.

Not a test: figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from figures import Row, read

REPO_ROOT = Path(__file__).resolve().parents[1]
SAM_BUILD = REPO_ROOT / ".aws-sam" / "build"


def benchmarks(quick: bool) -> list[tuple[str, list[str]]]:
    cold = ["bench/cold_imports.py", "--runs", "5" if quick else "11"]
    if SAM_BUILD.exists():
        cold += ["--sam-build", str(SAM_BUILD)]
    return [
        ("cold imports", cold),
        ("warm overhead and AWS calls", ["bench/generate_overhead.py", "-n", "100" if quick else "300"]),
        ("concurrent reservations", ["bench/reservations.py", "--calls", "160" if quick else "400"]),
        ("tiktoken throughput", ["bench/tokens.py", "--rounds", "1" if quick else "3"]),
        ("cache effect on cost", ["bench/cache_replay.py", "--requests", "200" if quick else "400"]),
    ]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    one, five, fifteen = os.getloadavg()
    load = f", load average {one:.2f} {five:.2f} {fifteen:.2f}"
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{memory}{load}; "
        f"Python {platform.python_version()}"
    )


def table(rows: list[Row]) -> str:
    """A Markdown table: section, measured, figure, goal, verdict."""
    lines = ["| section | measured | figure | goal | |", "| --- | --- | --- | --- | --- |"]
    order = {section: n for n, section in reversed(list(enumerate(row.section for row in rows)))}
    previous = ""
    for row in sorted(rows, key=lambda row: order[row.section]):  # stable: each section's rows together
        section = row.section if row.section != previous else ""
        previous = row.section
        lines.append(f"| {section} | {row.name} | {row.value} | {row.goal} | {row.verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--markdown", type=Path, help="also write the report to this Markdown file")
    parser.add_argument("--quick", action="store_true", help="fewer runs and requests (a smoke run)")
    parser.add_argument("--verbose", action="store_true", help="show each benchmark's own report")
    args = parser.parse_args(argv)

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / p) for p in ("layers/tollgate", "local", ".")),
    }
    rows: list[Row] = []
    failed: list[str] = []
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    where = machine()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as scratch:
        for title, command in benchmarks(args.quick):
            out = Path(scratch) / f"{len(rows)}-{Path(command[0]).stem}.json"
            print(f"== {title}: {' '.join(command)}", flush=True)
            began = time.perf_counter()
            result = subprocess.run(
                [sys.executable, *command, "--json", str(out)],
                cwd=REPO_ROOT,
                env=env,
                capture_output=not args.verbose,
                text=True,
                check=False,
            )
            print(f"   {time.perf_counter() - began:.0f} s, exit {result.returncode}", flush=True)
            if out.exists():
                rows.extend(read(out))
            if result.returncode != 0 or not out.exists():
                failed.append(title)
                if not args.verbose:
                    print((result.stdout or "")[-2000:], (result.stderr or "")[-2000:], sep="\n")
    elapsed = time.perf_counter() - started

    report = "\n".join(
        [
            table(rows),
            "",
            f"Machine: {where}.",
            f"Run {started_at:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s, with"
            f" `python bench/report.py{' --quick' if args.quick else ''}`.",
        ]
    )
    print()
    print(report)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}")
    if args.markdown:
        write_markdown(args.markdown, report)
    missed = [row for row in rows if row.verdict == "MISSED"]
    return 1 if failed else (2 if missed else 0)


MARKER = "<!-- bench/report.py writes below this line -->"


def write_markdown(path: Path, report: str) -> None:
    """Replace what follows the marker in ``path`` (the prose above it stays)."""
    head = path.read_text().split(MARKER)[0].rstrip() + "\n\n" if path.exists() else "# Performance\n\n"
    path.write_text(f"{head}{MARKER}\n\n{report}\n")


if __name__ == "__main__":
    sys.exit(main())
