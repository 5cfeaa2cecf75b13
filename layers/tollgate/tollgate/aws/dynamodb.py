"""A small typed layer over the DynamoDB client: plain Python values in and out, named
conditions, and transactions with their cancellation reasons.

Numbers come back as ``int`` (Tollgate stores no fractional numbers: money is integers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from msgspec import Struct, field

from tollgate.aws.clients import client
from tollgate.errors import ServiceUnavailable
from tollgate.staging import StagedWrites

# DynamoDB errors that say "not now" (after botocore's own retries): a 503 with Retry-After.
TRANSIENT_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)

Item = dict[str, Any]
_BATCH_GET_LIMIT = 100
_BATCH_WRITE_LIMIT = 25
_BATCH_ATTEMPTS = 10

logger = Logger()


class ConditionFailed(Exception):
    """A conditional write found the item in another state. ``item`` is its current state, if any."""

    def __init__(self, item: Item | None) -> None:
        super().__init__("condition failed")
        self.item = item


class TransactionCancelled(Exception):
    """A transaction was cancelled; ``reasons`` has one code per operation ('None' when fine)."""

    def __init__(self, reasons: list[str], items: list[Item | None]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons
        self.items = items

    @property
    def conflicted(self) -> bool:
        """True when another transaction got in the way (worth retrying), not a condition."""
        return "TransactionConflict" in self.reasons and "ConditionalCheckFailed" not in self.reasons


# DynamoDB's attribute values, written and read here rather than with boto3's TypeSerializer:
# these run for every item of every request, and the general one is several times slower.
# The same types: str, bool, int, Decimal, None, bytes, dict, list/tuple, sets of str or numbers.
# No floats: money and counters are integers (a float is refused, as boto3 refuses it).


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):  # before int: bool is an int
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, set | frozenset) and value:
        if all(isinstance(v, str) for v in value):
            return {"SS": sorted(value)}
        if all(isinstance(v, int | Decimal) and not isinstance(v, bool) for v in value):
            return {"NS": [str(v) for v in sorted(value)]}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def _number(text: str) -> int | Decimal:
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else number


def from_attribute(raw: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python value (numbers as ``int`` when whole)."""
    ((kind, value),) = raw.items()
    if kind == "S":
        return value
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else _number(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    if kind == "NULL":
        return None
    if kind == "B":
        return bytes(value)
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {_number(v) for v in value}
    if kind == "BS":
        return {bytes(v) for v in value}
    raise TypeError(f"unknown DynamoDB attribute type {kind!r}")


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attribute(v) for k, v in item.items() if v is not None}


def deserialize(raw: Mapping[str, Any]) -> Item:
    return {k: from_attribute(v) for k, v in raw.items()}


def _values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: to_attribute(v) for k, v in (values or {}).items()}


class Write(Struct, frozen=True):
    """One operation of a transaction."""

    kind: str  # Put | Update | Delete | ConditionCheck
    key: Item | None = None
    item: Item | None = None
    update: str | None = None
    condition: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)

    def to_request(self, table: str) -> dict[str, Any]:
        body: dict[str, Any] = {"TableName": table}
        if self.item is not None:
            body["Item"] = serialize(self.item)
        if self.key is not None:
            body["Key"] = serialize(self.key)
        if self.update is not None:
            body["UpdateExpression"] = self.update
        if self.condition is not None:
            body["ConditionExpression"] = self.condition
        if self.names:
            body["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            body["ExpressionAttributeValues"] = _values(self.values)
        body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return {self.kind: body}


class DynamoStagedWrites(Struct, frozen=True):
    """``tollgate.staging.StagedWrites`` of the Tollgate table: operations another adapter adds
    to its own transaction. ``on_commit`` runs once the transaction holding them committed
    (whoever commits calls ``committed()``), e.g. to emit the metrics of a logged request."""

    writes: tuple[Write, ...]
    on_commit: tuple[Callable[[], None], ...] = ()

    @property
    def count(self) -> int:
        return len(self.writes)

    def __add__(self, other: DynamoStagedWrites) -> DynamoStagedWrites:
        return DynamoStagedWrites(self.writes + other.writes, self.on_commit + other.on_commit)

    def committed(self) -> None:
        """Run the ``on_commit`` callbacks. What is committed stays committed: a callback that
        fails is logged, never raised."""
        for callback in self.on_commit:
            try:
                callback()
            except Exception:
                logger.exception("an on-commit callback of staged writes failed")

    def plus(self, other: StagedWrites) -> DynamoStagedWrites:
        """``tollgate.staging.StagedWrites.plus``: only writes of this table combine."""
        if not isinstance(other, DynamoStagedWrites):
            raise TypeError(f"cannot commit {type(other).__name__} with DynamoDB writes")
        return self + other


def put(
    item: Item,
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Write:
    return Write("Put", item=item, condition=condition, names=names or {}, values=values or {})


def update(
    key: Item,
    expression: str,
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Write:
    return Write(
        "Update", key=key, update=expression, condition=condition, names=names or {}, values=values or {}
    )


def delete(
    key: Item,
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Write:
    return Write("Delete", key=key, condition=condition, names=names or {}, values=values or {})


def check(
    key: Item, condition: str, names: Mapping[str, str] | None = None, values: Mapping[str, Any] | None = None
) -> Write:
    return Write("ConditionCheck", key=key, condition=condition, names=names or {}, values=values or {})


def raise_if_unavailable(exc: ClientError) -> None:
    """A transient DynamoDB error as ``ServiceUnavailable`` (503, ``Retry-After``); else nothing."""
    code = exc.response.get("Error", {}).get("Code", "")
    if code in TRANSIENT_ERRORS:
        raise ServiceUnavailable(
            f"DynamoDB is unavailable ({code}); retry shortly", headers={"Retry-After": "1"}
        ) from exc


class DynamoTable:
    """One DynamoDB table addressed by ``pk``/``sk``."""

    def __init__(self, name: str, dynamodb_client: Any | None = None) -> None:
        self.name = name
        self._client = dynamodb_client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> Item | None:
        try:
            raw = self.client.get_item(
                TableName=self.name, Key=serialize({"pk": pk, "sk": sk}), ConsistentRead=consistent
            )
        except ClientError as exc:
            raise_if_unavailable(exc)
            raise
        item = raw.get("Item")
        return deserialize(item) if item else None

    def put(
        self,
        item: Item,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        self._write("put_item", Item=serialize(item), condition=condition, names=names, values=values)

    def update(
        self,
        pk: str,
        sk: str,
        expression: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> Item:
        raw = self._write(
            "update_item",
            Key=serialize({"pk": pk, "sk": sk}),
            UpdateExpression=expression,
            ReturnValues="ALL_NEW",
            condition=condition,
            names=names,
            values=values,
        )
        return deserialize(raw.get("Attributes", {}))

    def delete(
        self,
        pk: str,
        sk: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        self._write(
            "delete_item",
            Key=serialize({"pk": pk, "sk": sk}),
            condition=condition,
            names=names,
            values=values,
        )

    def _write(
        self,
        operation: str,
        *,
        condition: str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        **params: Any,
    ) -> dict[str, Any]:
        params["TableName"] = self.name
        if condition:
            params["ConditionExpression"] = condition
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if names:
            params["ExpressionAttributeNames"] = dict(names)
        if values:
            params["ExpressionAttributeValues"] = _values(values)
        try:
            result: dict[str, Any] = getattr(self.client, operation)(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                old = exc.response.get("Item")
                raise ConditionFailed(deserialize(old) if old else None) from None
            raise_if_unavailable(exc)
            raise
        return result

    def query(
        self,
        key_condition: str,
        *,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        index: str | None = None,
        forward: bool = True,
        limit: int | None = None,
        start_key: Mapping[str, Any] | None = None,
        consistent: bool = False,
        filter_expression: str | None = None,
    ) -> tuple[list[Item], Item | None]:
        """One page of a query: the items, and the key to continue from (``None`` at the end)."""
        params: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ScanIndexForward": forward,
        }
        if names:
            params["ExpressionAttributeNames"] = dict(names)
        if values:
            params["ExpressionAttributeValues"] = _values(values)
        if index:
            params["IndexName"] = index
        elif consistent:
            params["ConsistentRead"] = True
        if limit:
            params["Limit"] = limit
        if start_key:
            params["ExclusiveStartKey"] = serialize(start_key)
        if filter_expression:
            params["FilterExpression"] = filter_expression
        try:
            raw = self.client.query(**params)
        except ClientError as exc:
            raise_if_unavailable(exc)
            raise
        last = raw.get("LastEvaluatedKey")
        return [deserialize(i) for i in raw.get("Items", [])], deserialize(last) if last else None

    def query_all(self, key_condition: str, **kwargs: Any) -> list[Item]:
        items: list[Item] = []
        start: Item | None = None
        while True:
            page, start = self.query(key_condition, start_key=start, **kwargs)
            items.extend(page)
            if start is None:
                return items

    def batch_get(self, keys: Sequence[Mapping[str, Any]], *, consistent: bool = True) -> list[Item]:
        """The items of ``keys`` that exist, in no particular order (100 keys per call; keys
        DynamoDB leaves unprocessed are asked again with backoff)."""
        found: list[Item] = []
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self.name: {
                    "Keys": [serialize(k) for k in keys[start : start + _BATCH_GET_LIMIT]],
                    "ConsistentRead": consistent,
                }
            }
            for attempt in range(_BATCH_ATTEMPTS):
                if attempt:
                    time.sleep(min(0.5, 0.01 * 2**attempt))
                try:
                    raw = self.client.batch_get_item(RequestItems=pending)
                except ClientError as exc:
                    raise_if_unavailable(exc)
                    raise
                found.extend(deserialize(item) for item in raw.get("Responses", {}).get(self.name, []))
                pending = raw.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise ServiceUnavailable(
                    "DynamoDB left keys unprocessed; retry shortly", headers={"Retry-After": "1"}
                )
        return found

    def batch_delete(self, keys: Sequence[Mapping[str, Any]]) -> None:
        """Delete every item of ``keys`` (25 per call, unprocessed ones sent again), not atomically."""
        for start in range(0, len(keys), _BATCH_WRITE_LIMIT):
            pending: dict[str, Any] = {
                self.name: [
                    {"DeleteRequest": {"Key": serialize(k)}} for k in keys[start : start + _BATCH_WRITE_LIMIT]
                ]
            }
            for attempt in range(_BATCH_ATTEMPTS):
                if attempt:
                    time.sleep(min(0.5, 0.01 * 2**attempt))
                try:
                    raw = self.client.batch_write_item(RequestItems=pending)
                except ClientError as exc:
                    raise_if_unavailable(exc)
                    raise
                pending = raw.get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                raise ServiceUnavailable(
                    "DynamoDB left writes unprocessed; retry shortly", headers={"Retry-After": "1"}
                )

    def transact(self, writes: Sequence[Write]) -> None:
        """All or nothing. Raises ``TransactionCancelled`` with a reason per write."""
        try:
            self.client.transact_write_items(TransactItems=[w.to_request(self.name) for w in writes])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "TransactionCanceledException":
                reasons_raw = exc.response.get("CancellationReasons") or []
                reasons = [str(r.get("Code", "None")) for r in reasons_raw]
                items = [deserialize(r["Item"]) if r.get("Item") else None for r in reasons_raw]
                if not reasons:
                    reasons = _reasons_from_message(str(error.get("Message", "")), len(writes))
                    items = [None] * len(reasons)
                raise TransactionCancelled(reasons, items) from None
            if error.get("Code") == "TransactionConflictException":
                raise TransactionCancelled(["TransactionConflict"], [None]) from None
            raise_if_unavailable(exc)
            raise


def _reasons_from_message(message: str, count: int) -> list[str]:
    """Some SDK paths only give the reasons inside the message: '... [None, ConditionalCheckFailed]'."""
    start, end = message.rfind("["), message.rfind("]")
    if start == -1 or end < start:
        return ["Unknown"] * count
    return [part.strip() for part in message[start + 1 : end].split(",")]
