"""The conversations use cases (S8b): a multi-turn chat kept on the server, each turn sent
through ``GenerationService`` as a normal chat request (limits, credits, cache, content
security, record, usage log).

A turn, ``send``:

1. the conversation is read and the turn claimed (a conditional write on the conversation:
   its message count unchanged, no other live turn), so two turns at once cannot interleave:
   the second gets ``409`` before anything is charged;
2. the history is read newest first and trimmed to the model's context window less the output
   budget (``tollgate.conversations.history``);
3. the chat goes through ``GenerationService.chat``; when it completes, the user message and the
   answer are written **in the same DynamoDB transaction as the charge** (``staged_with``), and
   the claim is dropped with them: a turn is charged if and only if it is appended;
4. when anything fails (content blocked, 402, 429, the provider), nothing is appended, nothing
   is charged, and the claim is dropped: the conversation is as before, and the client may send
   the same message again.

Who sees what: a member its own conversations, an owner its org's (another org's are ``404``);
only the conversation's user continues it. A claim older than ``turn_lock`` (longer than any
request can live) belongs to a request that died and may be taken over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger
from msgspec import Struct
from msgspec.structs import replace
from pydantic import ValidationError

from tollgate.api.params import field_errors
from tollgate.clock import Clock, SystemClock
from tollgate.conversations.history import HistoryWindow, fit_history
from tollgate.conversations.models import Conversation, ConversationPage, Message, MessagePage
from tollgate.conversations.ports import ConversationChanged, ConversationStore, TurnInProgress
from tollgate.errors import Conflict, FieldError, Forbidden, NotFound, TollgateError, ValidationFailed
from tollgate.generation.cache_key import CacheOptions
from tollgate.generation.context import RequestContext
from tollgate.generation.records import GenerationRecord
from tollgate.generation.registry import ModelRegistry, ResolvedChain
from tollgate.generation.requests import ChatCompletionRequest, SamplingParams
from tollgate.generation.security import scan_messages
from tollgate.generation.service import DEFAULT_MAX_OUTPUT_TOKENS, GenerationService, Outcome
from tollgate.identity.models import Caller, Role
from tollgate.ids import is_valid_id, new_id
from tollgate.providers.base import ChatMessage
from tollgate.staging import StagedWrites
from tollgate.tokens import count_tokens

logger = Logger()

ID_PREFIX = "conv"
TURN_LOCK = timedelta(seconds=90)
"""Longer than any request lives (API Gateway and the function time out at 29 s)."""
MAX_MESSAGE_BYTES = 300_000
"""A stored message stays well under DynamoDB's 400 KB item limit."""
HISTORY_PAGE = 100
TITLE_CHARS = 80
CLAIM_ATTEMPTS = 3


def check_conversation_id(conversation_id: str) -> str:
    """A conversation id from a path: anything that cannot be one is simply not found."""
    if not is_valid_id(conversation_id, ID_PREFIX):
        raise NotFound(f"No conversation {conversation_id[:80]!r}")
    return conversation_id


def _bounded(text: str) -> tuple[str, bool]:
    """``text`` cut (on a character boundary) to ``MAX_MESSAGE_BYTES`` of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= MAX_MESSAGE_BYTES:
        return text, False
    return data[:MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore"), True


class Turn(Struct, frozen=True):
    """A finished turn: the conversation after it, both messages, the generation's outcome
    (its record: one per turn, charged once), and how much history was sent."""

    conversation: Conversation
    user_message: Message
    answer: Message
    outcome: Outcome
    history_sent: int
    history_dropped: int


class ConversationService:
    """Conversations of every org, each turn through ``GenerationService``."""

    def __init__(
        self,
        store: ConversationStore,
        generation: GenerationService,
        clock: Clock | None = None,
        turn_lock: timedelta = TURN_LOCK,
    ) -> None:
        self._store = store
        self._generation = generation
        self._clock = clock or SystemClock()
        self._turn_lock = turn_lock

    @property
    def _registry(self) -> ModelRegistry:
        return self._generation.registry

    # -- the conversation ------------------------------------------------------------------

    def create(
        self, caller: Caller, model: str, title: str | None = None, system: str | None = None
    ) -> Conversation:
        """A new, empty conversation of the caller (an org's key) on a chat model or alias."""
        if caller.org_id is None:
            raise Forbidden("The platform admin has no org to converse for; use an org's key")
        every_provider = {spec.provider for spec in self._registry.models.values()}
        self._registry.resolve(model, configured=every_provider, kind="chat")  # 422 on `model`
        if system is not None and len(system.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise ValidationFailed([FieldError("system", f"at most {MAX_MESSAGE_BYTES} bytes of UTF-8")])
        now = self._clock.now()
        conversation = Conversation(
            conversation_id=new_id(ID_PREFIX),
            org_id=caller.org_id,
            user=caller.user,
            model=model,
            created_at=now,
            updated_at=now,
            title=title,
            system=system,
        )
        self._store.create(conversation)
        return conversation

    def get(self, caller: Caller, conversation_id: str) -> Conversation:
        """A conversation the caller may see (a member: its own); anything else is 404."""
        check_conversation_id(conversation_id)
        found = self._store.get(caller.org_id, conversation_id) if caller.org_id else None
        if found is None or (caller.role is Role.MEMBER and found.user != caller.user):
            raise NotFound(f"No conversation {conversation_id!r}")
        return found

    def conversations(self, caller: Caller, limit: int, cursor: str | None) -> ConversationPage:
        """The caller's org's conversations (a member's own), newest first."""
        if caller.org_id is None:
            return ConversationPage((), None)
        user = caller.user if caller.role is Role.MEMBER else None
        return self._store.page(caller.org_id, user, limit, cursor)

    def messages(
        self, caller: Caller, conversation_id: str, after: int, limit: int
    ) -> tuple[Conversation, MessagePage]:
        """A conversation and a page of its messages, oldest first, after number ``after``."""
        conversation = self.get(caller, conversation_id)
        return conversation, self._store.messages(conversation.org_id, conversation_id, after, limit)

    def delete(self, caller: Caller, conversation_id: str) -> None:
        """Delete a conversation and its messages (not while a turn is being answered: 409).
        Its turns' generation records stay: they are the org's usage."""
        conversation = self.get(caller, conversation_id)
        try:
            self._store.delete(conversation, self._clock.now() - self._turn_lock)
        except TurnInProgress:
            raise self._busy(conversation_id) from None

    # -- a turn ----------------------------------------------------------------------------

    def send(
        self,
        ctx: RequestContext,
        conversation_id: str,
        content: str,
        params: SamplingParams | None = None,
        cache: CacheOptions | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Turn:
        """Append ``content`` and the model's answer to the conversation, as one metered chat
        request with the history trimmed to the model's context window."""
        sampling = params or SamplingParams()
        if len(content.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise ValidationFailed([FieldError("content", f"at most {MAX_MESSAGE_BYTES} bytes of UTF-8")])
        conversation = self._claim(ctx, conversation_id)
        try:
            return self._answer(ctx, conversation, content, sampling, cache, metadata)
        except BaseException:
            self._release(conversation, ctx.request_id)
            raise

    def _claim(self, ctx: RequestContext, conversation_id: str) -> Conversation:
        for _attempt in range(CLAIM_ATTEMPTS):
            conversation = self.get(ctx.caller, conversation_id)
            if conversation.user != ctx.caller.user:
                raise Forbidden("Only the user who started a conversation continues it")
            now = self._clock.now()
            try:
                self._store.claim_turn(conversation, ctx.request_id, now, now - self._turn_lock)
            except TurnInProgress:
                raise self._busy(conversation_id) from None
            except ConversationChanged:
                continue  # a turn ended (or the conversation went) between the read and the claim
            return conversation
        raise self._busy(conversation_id)

    @staticmethod
    def _busy(conversation_id: str) -> Conflict:
        return Conflict(
            f"Conversation {conversation_id!r} is answering another message; retry when it is done",
            headers={"Retry-After": "2"},
        )

    def _release(self, conversation: Conversation, request_id: str) -> None:
        try:
            self._store.release_turn(conversation, request_id)
        except Exception:  # the claim goes stale by itself; the client must get the real error
            logger.exception("could not release a conversation turn")

    def _chain(self, model: str) -> ResolvedChain:
        return self._registry.resolve(model, configured=self._generation.providers.configured(), kind="chat")

    def _history(
        self, conversation: Conversation, content: str, chain: ResolvedChain, budget: int
    ) -> HistoryWindow:
        """The latest messages, read newest first a page at a time until the window is full."""
        limits = self._generation.content_limits
        history: list[Message] = []
        before = conversation.message_count + 1
        while True:
            page = self._store.latest_messages(
                conversation.org_id, conversation.conversation_id, before, HISTORY_PAGE
            )
            history[:0] = reversed(page)
            window = fit_history(conversation.system, history, content, chain.models, budget, limits)
            full = window.kept_messages < len(history)  # something did not fit: older ones will not
            if full or len(page) < HISTORY_PAGE or not page:
                return window
            before = page[-1].seq

    def _answer(
        self,
        ctx: RequestContext,
        conversation: Conversation,
        content: str,
        sampling: SamplingParams,
        cache: CacheOptions | None,
        metadata: dict[str, Any] | None,
    ) -> Turn:
        chain = self._chain(conversation.model)
        first = chain.models[0]
        budget = sampling.max_tokens or min(
            DEFAULT_MAX_OUTPUT_TOKENS, first.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        )
        window = self._history(conversation, content, chain, budget)
        # The user message is kept as the provider gets it (redacted by the org's policy). If the
        # policy blocks it, the generation below refuses it and records the refusal.
        try:
            scanned = scan_messages(
                (ChatMessage(role="user", content=content),), ctx.org.policy, self._generation.content_limits
            )
            kept_content = scanned.messages[0].content
        except TollgateError:
            kept_content = content
        now = self._clock.now()
        encoding = first.encoding
        user_message = Message(
            seq=conversation.message_count + 1,
            role="user",
            content=kept_content,
            tokens=count_tokens(kept_content, encoding),
            encoding=encoding,
            request_id=ctx.request_id,
            created_at=now,
        )
        title = conversation.title or " ".join(kept_content.split())[:TITLE_CHARS] or None

        def answer_of(record: GenerationRecord) -> Message:
            text, cut = _bounded(str((record.result or {}).get("text", "")))
            return Message(
                seq=conversation.message_count + 2,
                role="assistant",
                content=text,
                tokens=record.output_tokens,
                encoding=encoding,
                request_id=record.request_id,
                created_at=record.completed_at or now,
                truncated=cut or bool((record.result or {}).get("truncated")),
            )

        def append_turn(record: GenerationRecord) -> StagedWrites:
            # Committed with the charge: a turn is appended if and only if it is charged.
            return self._store.stage_turn(conversation, user_message, answer_of(record), title, now)

        try:
            request = ChatCompletionRequest.model_validate(
                {
                    "model": conversation.model,
                    "messages": [{"role": m.role, "content": m.content} for m in window.messages],
                    "max_tokens": budget,
                    "temperature": sampling.temperature,
                    "top_p": sampling.top_p,
                    "seed": sampling.seed,
                    "stop": sampling.stop,
                    "cache": cache,
                    "metadata": {**(metadata or {}), "conversation_id": conversation.conversation_id},
                }
            )
        except ValidationError as exc:
            raise ValidationFailed(field_errors(exc)) from None
        outcome = self._generation.chat(replace(ctx, staged_with=append_turn), request)
        answer = answer_of(outcome.record)
        after = replace(
            conversation,
            title=title,
            message_count=conversation.message_count + 2,
            updated_at=now,
            turn=None,
        )
        return Turn(
            conversation=after,
            user_message=user_message,
            answer=answer,
            outcome=outcome,
            history_sent=window.kept_messages,
            history_dropped=conversation.message_count - window.kept_messages,
        )


__all__ = ["ConversationService", "Turn", "check_conversation_id"]
