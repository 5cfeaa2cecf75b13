"""What of a conversation is sent with a new message: the history trimmed to fit (S8b).

The prompt of a turn is the system message (always kept), then as many of the latest turns as
fit, oldest first, then the new user message. It must fit the context window of every model the
conversation's model may fall back to, less the output budget, counted with each model's
tiktoken encoding the way OpenAI counts a chat (3 tokens per message, its role and content, and
3 to prime the answer); and the content limits (``PROMPT_MAX_MESSAGES``, ``PROMPT_MAX_CHARS``).
Turns are dropped whole (a user message with its answer), oldest first, so the history never
starts with an answer to a question it no longer holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from msgspec import Struct

from tollgate.conversations.models import Message
from tollgate.errors import FieldError, ValidationFailed
from tollgate.generation.registry import ModelSpec
from tollgate.generation.security import ContentLimits
from tollgate.providers.base import ChatMessage
from tollgate.tokens import count_tokens

MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3


def message_tokens(role: str, content: str, encoding: str) -> int:
    """What one chat message costs in the prompt with ``encoding``."""
    return MESSAGE_OVERHEAD_TOKENS + count_tokens(role, encoding) + count_tokens(content, encoding)


class HistoryWindow(Struct, frozen=True):
    """The messages to send, and how many messages of the history they keep."""

    messages: tuple[ChatMessage, ...]
    kept_messages: int
    prompt_tokens: dict[str, int]
    """The prompt's tokens in each encoding of the models it was fitted to."""


def _turns(history: Sequence[Message]) -> list[tuple[Message, ...]]:
    """The history (oldest first) as whole turns: each user message with what answers it."""
    turns: list[list[Message]] = []
    for message in history:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return [tuple(turn) for turn in turns]


class _Counter:
    """Tokens of messages per encoding, from a message's stored count when it was made with
    that encoding (the common case), else counted again."""

    def __init__(self, encodings: Iterable[str]) -> None:
        self.encodings = tuple(dict.fromkeys(encodings))

    def of(self, message: Message) -> dict[str, int]:
        return {
            encoding: (
                message.tokens + MESSAGE_OVERHEAD_TOKENS + count_tokens(message.role, encoding)
                if message.encoding == encoding
                else message_tokens(message.role, message.content, encoding)
            )
            for encoding in self.encodings
        }

    def of_text(self, role: str, content: str) -> dict[str, int]:
        return {encoding: message_tokens(role, content, encoding) for encoding in self.encodings}


def fit_history(
    system: str | None,
    history: Sequence[Message],
    new_content: str,
    models: Sequence[ModelSpec],
    output_budget: int,
    limits: ContentLimits,
) -> HistoryWindow:
    """The prompt of a new turn: the system message, the latest whole turns of ``history``
    (oldest first) that fit, and ``new_content``. Raises ``ValidationFailed`` when the system
    message and the new message alone do not fit (on ``content``, or ``params.max_tokens`` when
    the output budget leaves no room at all)."""
    counter = _Counter(str(spec.encoding) for spec in models)
    room: dict[str, int] = {}
    for spec in models:
        available = spec.context_window - output_budget - REPLY_PRIMING_TOKENS
        room[spec.encoding] = min(room.get(spec.encoding, available), available)
    if min(room.values()) <= 0:
        raise ValidationFailed(
            [
                FieldError(
                    "params.max_tokens", "the output budget leaves no room for a prompt in the context window"
                )
            ]
        )
    fixed = [counter.of_text("user", new_content)]
    if system is not None:
        fixed.append(counter.of_text("system", system))
    used = {encoding: sum(part[encoding] for part in fixed) for encoding in counter.encodings}
    chars = len(new_content) + len(system or "")
    count = len(fixed)
    if any(used[e] > room[e] for e in counter.encodings) or chars > limits.max_prompt_chars:
        smallest = min(spec.context_window for spec in models)
        raise ValidationFailed(
            [
                FieldError(
                    "content",
                    f"the message (with the system message) does not fit the model's context window "
                    f"of {smallest} tokens less an output budget of {output_budget}",
                    "too_long",
                )
            ]
        )
    kept: list[tuple[Message, ...]] = []
    for turn in reversed(_turns(history)):
        cost = [counter.of(message) for message in turn]
        extra = {e: sum(c[e] for c in cost) for e in counter.encodings}
        extra_chars = sum(len(message.content) for message in turn)
        if (
            any(used[e] + extra[e] > room[e] for e in counter.encodings)
            or count + len(turn) > limits.max_messages
            or chars + extra_chars > limits.max_prompt_chars
        ):
            break
        kept.append(turn)
        count += len(turn)
        chars += extra_chars
        used = {e: used[e] + extra[e] for e in counter.encodings}
    sent = [message for turn in reversed(kept) for message in turn]
    messages = [ChatMessage(role="system", content=system)] if system is not None else []
    messages.extend(ChatMessage(role=m.role, content=m.content) for m in sent)
    messages.append(ChatMessage(role="user", content=new_content))
    return HistoryWindow(
        messages=tuple(messages),
        kept_messages=len(sent),
        prompt_tokens={e: used[e] + REPLY_PRIMING_TOKENS for e in counter.encodings},
    )


__all__ = ["HistoryWindow", "fit_history", "message_tokens"]
