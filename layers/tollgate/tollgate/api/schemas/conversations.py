"""Bodies of the conversations API (S8b). Message text is kept exactly as sent."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tollgate.api.schemas.common import ResponseModel
from tollgate.conversations.models import Conversation, ConversationPage, Message
from tollgate.credits.amounts import credits_of_units
from tollgate.generation.cache_key import CacheOptions
from tollgate.generation.requests import SamplingParams

if TYPE_CHECKING:  # the service is built on the first conversation request, not at cold start
    from tollgate.conversations.service import Turn

MAX_PAGE = 100
MAX_MESSAGES_PAGE = 500


class ConversationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConversationIn(ConversationBody):
    """``POST /v1/conversations``: the chat model (or alias), and optionally a title and a
    system message (sent first with every turn, never trimmed)."""

    model: str = Field(min_length=1, max_length=200)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    system: str | None = Field(default=None, min_length=1, max_length=100_000)


class MessageIn(ConversationBody):
    """``POST /v1/conversations/{id}/messages``: the user's message, and the turn's sampling
    parameters, cache options and metadata (``metadata.mock`` steers the mock provider)."""

    content: str = Field(min_length=1, max_length=100_000)
    params: SamplingParams = Field(default_factory=SamplingParams)
    cache: CacheOptions | None = None
    metadata: dict[str, Any] | None = Field(default=None, max_length=15)


class MessageOut(ResponseModel):
    seq: int
    role: str
    content: str
    tokens: int
    request_id: str
    created_at: datetime
    truncated: bool

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls(
            seq=message.seq,
            role=message.role,
            content=message.content,
            tokens=message.tokens,
            request_id=message.request_id,
            created_at=message.created_at,
            truncated=message.truncated,
        )


class ConversationOut(ResponseModel):
    id: str
    object: str = "conversation"
    org_id: str
    user: str
    title: str | None
    model: str
    system: str | None
    message_count: int
    created_at: datetime
    updated_at: datetime
    messages: list[MessageOut] | None = None
    next_cursor: str | None = None

    @classmethod
    def of(
        cls,
        conversation: Conversation,
        messages: tuple[Message, ...] | None = None,
        next_cursor: str | None = None,
    ) -> ConversationOut:
        return cls(
            id=conversation.conversation_id,
            org_id=conversation.org_id,
            user=conversation.user,
            title=conversation.title,
            model=conversation.model,
            system=conversation.system,
            message_count=conversation.message_count,
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
            messages=[MessageOut.of(m) for m in messages] if messages is not None else None,
            next_cursor=next_cursor,
        )


class ConversationPageOut(ResponseModel):
    object: str = "list"
    data: list[ConversationOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: ConversationPage) -> ConversationPageOut:
        return cls(data=[ConversationOut.of(c) for c in page.conversations], next_cursor=page.next_cursor)


class TurnUsageOut(ResponseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class TurnOut(ResponseModel):
    """A finished turn: the answer, the user message as kept, and what the turn cost."""

    object: str = "conversation.turn"
    conversation_id: str
    request_id: str
    message: MessageOut
    user_message: MessageOut
    message_count: int
    model: str
    usage: TurnUsageOut
    credits_charged: Decimal
    cached: bool
    history_sent: int
    history_dropped: int

    @classmethod
    def of(cls, turn: Turn) -> TurnOut:
        record = turn.outcome.record
        return cls(
            conversation_id=turn.conversation.conversation_id,
            request_id=record.request_id,
            message=MessageOut.of(turn.answer),
            user_message=MessageOut.of(turn.user_message),
            message_count=turn.conversation.message_count,
            model=record.model,
            usage=TurnUsageOut(
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                total_tokens=record.input_tokens + record.output_tokens,
            ),
            credits_charged=credits_of_units(record.credits_charged),
            cached=record.cached,
            history_sent=turn.history_sent,
            history_dropped=turn.history_dropped,
        )
