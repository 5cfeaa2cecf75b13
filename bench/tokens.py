"""tiktoken throughput: tokens per second counted by ``tollgate.tokens.count_tokens`` (issue 8).

Every request's estimate counts its prompt before the provider is called, and providers that
report no usage are counted after; this measures that counting on a deterministic corpus
(English-like prose, source code and JSON, about 1 MB), with the encodings shipped in the
layer (network blocked, as in Lambda), in prompt-sized pieces (2 KB) and as one long text.

    PYTHONPATH=layers/tollgate .venv/bin/python bench/tokens.py

Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import time
from typing import Any

from figures import Figures, add_json_argument

from tollgate.tokens import count_tokens, encoding_for

ENCODINGS = ("cl100k_base", "o200k_base")
PIECE = 2_000  # characters: a typical prompt
PROSE = (
    "the gateway meters every request before the provider sees it and settles after with the "
    "actual usage credits quota limit window reservation ledger balance lot expiry purchase "
    "organization member owner template variable image palette cache hit miss provider model "
    "token embedding completion conversation context international naïve café déjà vu"
)
CODE = '''def settle(self, org_id: str, reservation_id: str, actual: Usage) -> Settlement:
    """Charge the actual usage of a held reservation and give the rest back."""
    for attempt in range(self._max_attempts):
        snapshot = self._store.load(org_id, reservation_id=reservation_id)
        if snapshot.reservation is None:
            raise NotFound(f"No reservation {reservation_id!r}")
'''


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network blocked by bench/tokens.py")


def corpus(size: int = 1_000_000, seed: int = 7) -> str:
    rng = random.Random(seed)
    words = PROSE.split()
    parts: list[str] = []
    length = 0
    while length < size:
        kind = rng.random()
        if kind < 0.7:
            part = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120))).capitalize() + ".\n"
        elif kind < 0.85:
            part = CODE
        else:
            number = rng.randint(0, 10**9)
            message = {"role": "user", "content": str(number)}
            part = json.dumps({"model": "openai/gpt-4o-mini", "messages": [message]}) + "\n"
        parts.append(part)
        length += len(part)
    return "".join(parts)[:size]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="passes over the corpus (median taken)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    socket.socket.connect = _refuse  # type: ignore[method-assign]
    socket.create_connection = _refuse
    text = corpus()
    pieces = [text[i : i + PIECE] for i in range(0, len(text), PIECE)]
    figures = Figures()
    print(
        f"tiktoken via tollgate.tokens.count_tokens, {len(text):,} characters;"
        f" Python {sys.version.split()[0]}"
    )
    for encoding in ENCODINGS:
        started = time.perf_counter()
        encoding_for(encoding)
        load_ms = (time.perf_counter() - started) * 1000
        rates_pieces: list[float] = []
        rates_whole: list[float] = []
        tokens = 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            tokens = sum(count_tokens(piece, encoding) for piece in pieces)
            rates_pieces.append(tokens / (time.perf_counter() - started))
            started = time.perf_counter()
            whole = count_tokens(text, encoding)
            rates_whole.append(whole / (time.perf_counter() - started))
        in_pieces, as_one = statistics.median(rates_pieces), statistics.median(rates_whole)
        print(
            f"  {encoding:<12} load {load_ms:6.0f} ms; {tokens:,} tokens; "
            f"{in_pieces:,.0f} tokens/s in {PIECE}-character prompts, {as_one:,.0f} tokens/s as one text"
        )
        figures.add(
            "tiktoken", f"{encoding}: tokens per second, {PIECE}-character prompts", f"{in_pieces:,.0f}"
        )
        figures.add("tiktoken", f"{encoding}: tokens per second, one 1 MB text", f"{as_one:,.0f}")
    figures.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
