"""Conversations in the Tollgate table: the adapter behind
``tollgate.conversations.ports.ConversationStore``.

Items (see ``docs/conversations.md``), under ``pk = ORG#<org>#CONV#<conversation id>`` (the org
comes from the caller, so another org's conversation is simply absent):

- the conversation, ``sk = CONV``: model, title, system message, ``message_count``, and while a
  turn is answered its claim (``turn_request_id``, ``turn_started_ms``); listed newest first
  from gsi1 with ``gsi1pk = ORG#<org>#CONVS``, ``gsi1sk = <created at, ms>#<id>``;
- each message, ``sk = MSG#<n:08d>``: one item per message (a long conversation never meets
  DynamoDB's 400 KB item limit), read by range in either order.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from tollgate.aws.dynamodb import (
    ConditionFailed,
    DynamoStagedWrites,
    DynamoTable,
    Item,
    put,
    update,
)
from tollgate.aws.usage_store import stamp
from tollgate.clock import parse_iso
from tollgate.conversations.models import (
    Conversation,
    ConversationPage,
    Message,
    MessagePage,
    TurnClaim,
)
from tollgate.conversations.ports import ConversationChanged, TurnInProgress
from tollgate.errors import InvalidRequest

HEAD = "CONV"
GSI = "gsi1"
_LAST_MESSAGE = 99_999_999


def conversation_pk(org_id: str, conversation_id: str) -> str:
    return f"ORG#{org_id}#CONV#{conversation_id}"


def conversations_gsi_pk(org_id: str) -> str:
    return f"ORG#{org_id}#CONVS"


def message_sk(seq: int) -> str:
    return f"MSG#{seq:08d}"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _head_item(conversation: Conversation) -> Item:
    item: Item = {
        "pk": conversation_pk(conversation.org_id, conversation.conversation_id),
        "sk": HEAD,
        "gsi1pk": conversations_gsi_pk(conversation.org_id),
        "gsi1sk": f"{stamp(conversation.created_at)}#{conversation.conversation_id}",
        "type": "conversation",
        "conversation_id": conversation.conversation_id,
        "org_id": conversation.org_id,
        "user": conversation.user,
        "model": conversation.model,
        "message_count": conversation.message_count,
        "created_at": stamp(conversation.created_at),
        "updated_at": stamp(conversation.updated_at),
    }
    if conversation.title is not None:
        item["title"] = conversation.title
    if conversation.system is not None:
        item["system"] = conversation.system
    return item


def _conversation_of(item: Item) -> Conversation:
    claim = None
    if item.get("turn_request_id"):
        started = datetime.fromtimestamp(int(item["turn_started_ms"]) / 1000, UTC)
        claim = TurnClaim(str(item["turn_request_id"]), started)
    return Conversation(
        conversation_id=str(item["conversation_id"]),
        org_id=str(item["org_id"]),
        user=str(item["user"]),
        model=str(item["model"]),
        created_at=parse_iso(str(item["created_at"])),
        updated_at=parse_iso(str(item["updated_at"])),
        title=item.get("title"),
        system=item.get("system"),
        message_count=int(item.get("message_count", 0)),
        turn=claim,
    )


def _message_item(conversation: Conversation, message: Message) -> Item:
    item: Item = {
        "pk": conversation_pk(conversation.org_id, conversation.conversation_id),
        "sk": message_sk(message.seq),
        "type": "conversation_message",
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "tokens": message.tokens,
        "encoding": message.encoding,
        "request_id": message.request_id,
        "created_at": stamp(message.created_at),
    }
    if message.truncated:
        item["truncated"] = True
    return item


def _message_of(item: Item) -> Message:
    role = str(item["role"])
    return Message(
        seq=int(item["seq"]),
        role="assistant" if role == "assistant" else "user",
        content=str(item["content"]),
        tokens=int(item.get("tokens", 0)),
        encoding=str(item.get("encoding", "cl100k_base")),
        request_id=str(item.get("request_id", "")),
        created_at=parse_iso(str(item["created_at"])),
        truncated=bool(item.get("truncated", False)),
    )


def _encode_cursor(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("Invalid cursor") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("Invalid cursor")
    return raw


class DynamoConversationStore:
    """``ConversationStore`` over the Tollgate table."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def create(self, conversation: Conversation) -> None:
        self._table.put(_head_item(conversation), condition="attribute_not_exists(pk)")

    def get(self, org_id: str, conversation_id: str) -> Conversation | None:
        item = self._table.get(conversation_pk(org_id, conversation_id), HEAD)
        return _conversation_of(item) if item else None

    def page(self, org_id: str, user: str | None, limit: int, cursor: str | None) -> ConversationPage:
        start = None
        if cursor is not None:
            raw = _decode_cursor(cursor)
            key = raw.get("key")
            if (
                raw.get("org") != org_id
                or raw.get("user") != user
                or not isinstance(key, dict)
                or set(key) != {"pk", "sk", "gsi1pk", "gsi1sk"}
                or key.get("gsi1pk") != conversations_gsi_pk(org_id)
            ):
                raise InvalidRequest("Invalid cursor")
            start = key
        items, last = self._table.query(
            "gsi1pk = :pk",
            index=GSI,
            names={"#user": "user"} if user is not None else None,
            values={":pk": conversations_gsi_pk(org_id), **({":user": user} if user is not None else {})},
            forward=False,
            limit=limit,
            start_key=start,
            filter_expression="#user = :user" if user is not None else None,
        )
        next_cursor = _encode_cursor({"org": org_id, "user": user, "key": last}) if last else None
        return ConversationPage(tuple(_conversation_of(item) for item in items), next_cursor)

    def messages(self, org_id: str, conversation_id: str, after: int, limit: int) -> MessagePage:
        items, last = self._table.query(
            "pk = :pk AND sk BETWEEN :from AND :to",
            values={
                ":pk": conversation_pk(org_id, conversation_id),
                ":from": message_sk(after + 1),
                ":to": message_sk(_LAST_MESSAGE),
            },
            limit=limit,
            consistent=True,
        )
        messages = tuple(_message_of(item) for item in items)
        more = last is not None and bool(messages)
        return MessagePage(messages, str(messages[-1].seq) if more else None)

    def latest_messages(self, org_id: str, conversation_id: str, before: int, limit: int) -> list[Message]:
        if before <= 1:
            return []
        items, _last = self._table.query(
            "pk = :pk AND sk BETWEEN :from AND :to",
            values={
                ":pk": conversation_pk(org_id, conversation_id),
                ":from": message_sk(1),
                ":to": message_sk(before - 1),
            },
            forward=False,
            limit=limit,
            consistent=True,
        )
        return [_message_of(item) for item in items]

    def claim_turn(
        self, conversation: Conversation, request_id: str, now: datetime, stale_before: datetime
    ) -> None:
        try:
            self._table.update(
                conversation_pk(conversation.org_id, conversation.conversation_id),
                HEAD,
                "SET turn_request_id = :request, turn_started_ms = :now",
                condition=(
                    "message_count = :seen AND "
                    "(attribute_not_exists(turn_request_id) OR turn_started_ms < :stale)"
                ),
                values={
                    ":request": request_id,
                    ":now": _ms(now),
                    ":seen": conversation.message_count,
                    ":stale": _ms(stale_before),
                },
            )
        except ConditionFailed as failed:
            current = failed.item
            if current is None or int(current.get("message_count", -1)) != conversation.message_count:
                raise ConversationChanged(conversation.conversation_id) from None
            raise TurnInProgress(conversation.conversation_id) from None

    def release_turn(self, conversation: Conversation, request_id: str) -> None:
        # Nothing to do when the claim is not (or no longer) this request's.
        with contextlib.suppress(ConditionFailed):
            self._table.update(
                conversation_pk(conversation.org_id, conversation.conversation_id),
                HEAD,
                "REMOVE turn_request_id, turn_started_ms",
                condition="turn_request_id = :request",
                values={":request": request_id},
            )

    def stage_turn(
        self, conversation: Conversation, user: Message, answer: Message, title: str | None, now: datetime
    ) -> DynamoStagedWrites:
        key = {"pk": conversation_pk(conversation.org_id, conversation.conversation_id), "sk": HEAD}
        values: dict[str, Any] = {":count": answer.seq, ":now": stamp(now)}
        expression = "SET message_count = :count, updated_at = :now"
        if title is not None:
            expression += ", title = if_not_exists(title, :title)"
            values[":title"] = title
        return DynamoStagedWrites(
            (
                put(_message_item(conversation, user)),
                put(_message_item(conversation, answer)),
                update(key, expression + " REMOVE turn_request_id, turn_started_ms", values=values),
            )
        )

    def delete(self, conversation: Conversation, stale_before: datetime) -> None:
        pk = conversation_pk(conversation.org_id, conversation.conversation_id)
        try:
            self._table.delete(
                pk,
                HEAD,
                condition="attribute_not_exists(turn_request_id) OR turn_started_ms < :stale",
                values={":stale": _ms(stale_before)},
            )
        except ConditionFailed as failed:
            if failed.item is None:
                return  # deleted meanwhile
            raise TurnInProgress(conversation.conversation_id) from None
        # The conversation is gone first, so no turn can start on it; then its messages.
        keys = [
            {"pk": item["pk"], "sk": item["sk"]}
            for item in self._table.query_all(
                "pk = :pk AND begins_with(sk, :msg)", values={":pk": pk, ":msg": "MSG#"}
            )
        ]
        self._table.batch_delete(keys)
