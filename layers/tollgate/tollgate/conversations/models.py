"""A conversation and its messages (S8b).

A conversation belongs to an org and to the user who started it; it names a chat model (or an
alias) and may carry a system message. Its messages are numbered from 1 in the order they were
written: each turn appends the user's message and the model's answer together, so a
conversation always holds whole turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

MessageRole = Literal["user", "assistant"]


@dataclass(frozen=True)
class TurnClaim:
    """A turn being answered: which request, since when (a claim older than the turn lock is
    a request that died, and may be taken over)."""

    request_id: str
    started_at: datetime


@dataclass(frozen=True)
class Conversation:
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


@dataclass(frozen=True)
class Message:
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


@dataclass(frozen=True)
class ConversationPage:
    conversations: tuple[Conversation, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class MessagePage:
    messages: tuple[Message, ...]
    next_cursor: str | None
