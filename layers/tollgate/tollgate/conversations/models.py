"""A conversation and its messages (S8b).

A conversation belongs to an org and to the user who started it; it names a chat model (or an
alias) and may carry a system message. Its messages are numbered from 1 in the order they were
written: each turn appends the user's message and the model's answer together, so a
conversation always holds whole turns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from msgspec import Struct

MessageRole = Literal["user", "assistant"]


class TurnClaim(Struct, frozen=True):
    """A turn being answered: which request, since when (a claim older than the turn lock is
    a request that died, and may be taken over)."""

    request_id: str
    started_at: datetime


class Conversation(Struct, frozen=True):
    conversation_id: str
    org_id: str
    user: str
    model: str
    created_at: datetime
    updated_at: datetime
    title: str | None = None
    system: str | None = None
    message_count: int = 0
    turn: TurnClaim | None = None


class Message(Struct, frozen=True):
    """One message: ``tokens`` counted with ``encoding`` (the conversation model's), and the
    generation request that wrote it (both messages of a turn name the same one)."""

    seq: int
    role: MessageRole
    content: str
    tokens: int
    encoding: str
    request_id: str
    created_at: datetime
    truncated: bool = False


class ConversationPage(Struct, frozen=True):
    conversations: tuple[Conversation, ...]
    next_cursor: str | None


class MessagePage(Struct, frozen=True):
    messages: tuple[Message, ...]
    next_cursor: str | None
