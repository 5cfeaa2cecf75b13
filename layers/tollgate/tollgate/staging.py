"""Writes one store prepares for another store to commit, all or nothing with its own.

A generation's record and usage log entry are written in the same DynamoDB transaction as the
settlement that charges for it: one AWS call instead of two, and never a charge without its
record or a record without its charge. The domain only passes ``StagedWrites`` along: the
generation store stages them (``GenerationStore.stage``), metering commits them
(``MeteringService.settle(..., attach=...)``). What they hold is the adapters' business
(``tollgate.aws.dynamodb.DynamoStagedWrites``).
"""

from __future__ import annotations

from typing import Protocol


class StagedWrites(Protocol):
    """Writes prepared by a store and not made yet."""

    @property
    def count(self) -> int:
        """How many items they write (a DynamoDB transaction holds at most 100)."""
        ...

    def plus(self, other: StagedWrites) -> StagedWrites:
        """These writes and ``other``'s, to commit together (both prepared for the same
        database: ``TypeError`` otherwise)."""
        ...


__all__ = ["StagedWrites"]
