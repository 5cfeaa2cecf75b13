"""Where conversations live (``tollgate.aws.conversation_store`` over DynamoDB)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from tollgate.conversations.models import Conversation, ConversationPage, Message, MessagePage
from tollgate.staging import StagedWrites


class TurnInProgress(Exception):
    """Another turn of the conversation is being answered (its claim is not stale yet)."""


class ConversationChanged(Exception):
    """The conversation is no longer as it was read (a turn ended meanwhile, or it is gone)."""


class ConversationStore(Protocol):
    def create(self, conversation: Conversation) -> None: ...

    def get(self, org_id: str, conversation_id: str) -> Conversation | None:
        """The conversation of this org (strongly consistent)."""
        ...

    def page(self, org_id: str, user: str | None, limit: int, cursor: str | None) -> ConversationPage:
        """The org's conversations (a user's only, when given), newest first."""
        ...

    def messages(self, org_id: str, conversation_id: str, after: int, limit: int) -> MessagePage:
        """Messages after number ``after``, oldest first; the cursor continues."""
        ...

    def latest_messages(self, org_id: str, conversation_id: str, before: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages numbered below ``before``, newest first (strongly consistent)."""
        ...

    def claim_turn(
        self, conversation: Conversation, request_id: str, now: datetime, stale_before: datetime
    ) -> None:
        """Mark a turn in progress, only if the conversation still has the messages it was read
        with (``ConversationChanged``) and no live turn (``TurnInProgress``)."""
        ...

    def release_turn(self, conversation: Conversation, request_id: str) -> None:
        """Drop this request's claim (a turn that failed); nothing if it is not its claim."""
        ...

    def stage_turn(
        self, conversation: Conversation, user: Message, answer: Message, title: str | None, now: datetime
    ) -> StagedWrites:
        """The writes of a finished turn (both messages, the conversation moved on and its
        claim dropped), unconditional, for the transaction that charges the turn."""
        ...

    def delete(self, conversation: Conversation, stale_before: datetime) -> None:
        """Delete the conversation (only if no live turn: ``TurnInProgress``), then its messages."""
        ...
