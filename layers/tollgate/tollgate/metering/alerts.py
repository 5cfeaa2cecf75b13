"""Low-balance alert thresholds: which ones a balance has crossed since the last top-up.

A threshold is a share of the last top-up (20 %, 10 %) or zero. It fires once, the first time
the balance is at or below it after a top-up, and re-arms at the next top-up. The account keeps
the set of thresholds already fired, so the check needs no extra read.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

THRESHOLD_PERCENTS: tuple[int, ...] = (20, 10, 0)


def threshold_units(last_topup: int, percent: int) -> int:
    """The balance (credit units, rounded down) at which a threshold of ``percent`` fires."""
    return last_topup * percent // 100


def crossed_thresholds(
    last_topup: int,
    fired: Collection[int],
    balance_after: int,
    percents: Sequence[int] = THRESHOLD_PERCENTS,
) -> list[int]:
    """The percents that fire now: not fired since the last top-up, and the balance at or below
    them (``balance * 100 <= last_topup * percent``, exact in integers). Nothing fires before
    the first top-up."""
    if last_topup <= 0:
        return []
    return [p for p in percents if p not in fired and balance_after * 100 <= last_topup * p]
