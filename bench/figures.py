"""The figures a benchmark hands to ``bench/report.py``: one row per measured thing, written as
JSON with ``--json PATH`` beside the benchmark's own printed report."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    value: str
    goal: str = ""
    verdict: str = ""  # "met", "MISSED", or "" when there is no goal


@dataclass
class Figures:
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, name: str, value: str, goal: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("met" if met else "MISSED")
        self.rows.append(Row(section, name, value, goal, verdict))

    def write(self, path: Path | None) -> None:
        if path is not None:
            path.write_text(json.dumps([asdict(row) for row in self.rows], indent=1))


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the figures for bench/report.py"
    )


def read(path: Path) -> list[Row]:
    return [Row(**raw) for raw in json.loads(path.read_text())]
