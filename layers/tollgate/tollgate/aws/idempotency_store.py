"""Idempotency keys as explicit items: pk=IDEMP#<scope>#<sha256(key)>, sk=IDEMP, TTL on expire_at."""

from __future__ import annotations

import contextlib
import hashlib
import secrets

from tollgate.api.idempotency import Claimed, StoredResponse
from tollgate.aws.dynamodb import ConditionFailed, DynamoTable, Item
from tollgate.errors import IdempotencyConflict, IdempotencyInProgress

IN_PROGRESS = "in_progress"
COMPLETE = "complete"


def _pk(scope: str, key: str) -> str:
    return f"IDEMP#{scope}#{hashlib.sha256(key.encode()).hexdigest()}"


class DynamoIdempotencyStore:
    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def claim(
        self, scope: str, key: str, fingerprint: str, now: int, lock_seconds: int, ttl_seconds: int
    ) -> Claimed | StoredResponse:
        token = secrets.token_hex(16)
        item: Item = {
            "pk": _pk(scope, key),
            "sk": "IDEMP",
            "type": "idempotency",
            "fingerprint": fingerprint,
            "status": IN_PROGRESS,
            "token": token,
            "lock_until": now + lock_seconds,
            "created_at_epoch": now,
            "expire_at": now + ttl_seconds,
        }
        try:
            self._table.put(
                item, condition="attribute_not_exists(pk) OR expire_at < :now", values={":now": now}
            )
            return Claimed(token)
        except ConditionFailed as exc:
            current = exc.item
        if current is None:  # vanished between the write and now: treat as a concurrent run
            raise IdempotencyInProgress("Retry shortly", headers={"Retry-After": "1"})
        if current.get("fingerprint") != fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request; use a new key"
            )
        if current.get("status") == COMPLETE:
            return StoredResponse(
                status=int(current["response_status"]),
                body=str(current["response_body"]),
                content_type=str(current.get("response_content_type", "application/json")),
            )
        if int(current.get("lock_until", 0)) > now:
            retry = max(1, int(current["lock_until"]) - now)
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still being processed; retry later",
                headers={"Retry-After": str(min(retry, 5))},
            )
        # The first attempt died while holding the lock: take it over, once.
        try:
            self._table.update(
                item["pk"],
                "IDEMP",
                "SET #token = :new, lock_until = :lock",
                condition="#status = :inprog AND #token = :old",
                names={"#token": "token", "#status": "status"},
                values={
                    ":new": token,
                    ":lock": now + lock_seconds,
                    ":inprog": IN_PROGRESS,
                    ":old": current.get("token", ""),
                },
            )
        except ConditionFailed:
            raise IdempotencyInProgress("Retry shortly", headers={"Retry-After": "1"}) from None
        return Claimed(token)

    def complete(self, scope: str, key: str, token: str, response: StoredResponse) -> None:
        self._table.update(
            _pk(scope, key),
            "IDEMP",
            "SET #status = :done, response_status = :st, response_body = :body, response_content_type = :ct "
            "REMOVE lock_until",
            condition="#token = :token",
            names={"#status": "status", "#token": "token"},
            values={
                ":done": COMPLETE,
                ":st": response.status,
                ":body": response.body,
                ":ct": response.content_type,
                ":token": token,
            },
        )

    def abandon(self, scope: str, key: str, token: str) -> None:
        # Another attempt took the key over meanwhile: it is theirs to finish.
        with contextlib.suppress(ConditionFailed):
            self._table.delete(
                _pk(scope, key),
                "IDEMP",
                condition="#token = :token",
                names={"#token": "token"},
                values={":token": token},
            )
