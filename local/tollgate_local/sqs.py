"""SQS event sources: what Lambda's event source mapping does for an ``SQS`` event.

For every ``Type: SQS`` event of every function in the template, a ``QueuePoller`` thread
long-polls the queue, gathers up to ``BatchSize`` messages (waiting at most
``MaximumBatchingWindowInSeconds``), invokes the function with a real SQS event and deletes
what succeeded: every message, or with ``FunctionResponseTypes: [ReportBatchItemFailures]``
every message not named in ``batchItemFailures``. When the function fails, nothing is deleted:
the messages come back after the queue's visibility timeout, and the queue's RedrivePolicy
(moto applies it on receive, as SQS does) moves a message to the DLQ once it has been received
``maxReceiveCount`` times.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tollgate_local.gateway import FunctionFailed, Invoker
from tollgate_local.resources import REGION
from tollgate_local.template import Resolver, function_properties, resources_of_type

logger = logging.getLogger("tollgate_local.sqs")

MAX_RECEIVE = 10  # SQS returns at most 10 messages per ReceiveMessage
LONG_POLL_SECONDS = 20  # what Lambda's pollers use


@dataclass(frozen=True)
class SqsEventSource:
    """One ``SQS`` event of a function, as its event source mapping would be configured."""

    function_id: str
    event_name: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool
    enabled: bool

    @property
    def queue_name(self) -> str:
        return self.queue_arn.rsplit(":", 1)[-1]


def sqs_event_sources(template: Mapping[str, Any], resolver: Resolver) -> list[SqsEventSource]:
    """Every ``SQS`` event of every function of the template, its queue resolved to an ARN."""
    sources = []
    for function_id in resources_of_type(template, "AWS::Serverless::Function"):
        events = function_properties(template, function_id).get("Events") or {}
        for event_name, event in events.items():
            if event.get("Type") != "SQS":
                continue
            props = resolver.resolve(event.get("Properties") or {})
            sources.append(
                SqsEventSource(
                    function_id=function_id,
                    event_name=event_name,
                    queue_arn=str(props["Queue"]),
                    batch_size=int(props.get("BatchSize", 10)),
                    batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (props.get("FunctionResponseTypes") or []),
                    enabled=str(props.get("Enabled", True)).lower() != "false",
                )
            )
    return sources


def _message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """SQS message attributes as Lambda writes them (lower camel case, binary as base64)."""
    result = {}
    for name, value in attributes.items():
        binary = value.get("BinaryValue")
        result[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode("ascii") if binary is not None else None,
            "stringListValues": list(value.get("StringListValues") or []),
            "binaryListValues": [
                base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues") or []
            ],
            "dataType": value.get("DataType", "String"),
        }
        result[name] = {k: v for k, v in result[name].items() if v is not None}
    return result


def sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One ``Records`` entry of the event Lambda sends for an SQS message."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": _message_attributes(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The Lambda event for a batch of messages."""
    return {"Records": [sqs_record(message, queue_arn) for message in messages]}


def messages_to_delete(
    message_ids: Sequence[str], result: Mapping[str, Any] | None, report_batch_item_failures: bool
) -> list[str]:
    """Which messages of a batch the function handled, so may be deleted.

    ``result`` is the function's answer, ``None`` if it failed (then none). Partial batch
    responses follow Lambda's rules: no ``batchItemFailures`` (or an empty list) is a full
    success; an entry without a usable ``itemIdentifier``, or naming a message not in the
    batch, makes the whole batch a failure.
    """
    if result is None:
        return []
    if not report_batch_item_failures:
        return list(message_ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return list(message_ids)
    if not isinstance(failures, list):
        return []
    failed = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            return []
        failed.add(identifier)
    return [message_id for message_id in message_ids if message_id not in failed]


class QueuePoller:
    """The event source mapping of one ``SQS`` event: a thread polling its queue."""

    def __init__(
        self,
        source: SqsEventSource,
        sqs_client: Any,
        invoke: Invoker,
        *,
        wait_seconds: int = LONG_POLL_SECONDS,
        failed_visibility_seconds: int | None = None,
        on_batch: Callable[[SqsEventSource, int, int], None] | None = None,
    ) -> None:
        """``failed_visibility_seconds``: if set, failed messages come back after that many
        seconds instead of the queue's visibility timeout (faster local retries);
        ``on_batch(source, received, deleted)`` is told about every batch (tests)."""
        self.source = source
        self._sqs = sqs_client
        self._invoke = invoke
        self._wait_seconds = max(0, min(wait_seconds, LONG_POLL_SECONDS))
        self._failed_visibility = failed_visibility_seconds
        self._on_batch = on_batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue_url: str | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = str(self._sqs.get_queue_url(QueueName=self.source.queue_name)["QueueUrl"])
        return self._queue_url

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"sqs-{self.source.function_id}-{self.source.event_name}", daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after the poll in flight, without waiting."""
        self._stop.set()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to stop; a long poll in flight is not waited for beyond ``timeout``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return  # moto went away during shutdown
                logger.exception("polling %s failed; retrying", self.source.queue_name)
                self._stop.wait(1.0)

    def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(MAX_RECEIVE, count)),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def poll_once(self) -> int:
        """Receive one batch, invoke the function, delete what it handled. Returns how many
        messages were received."""
        batch = self._receive(self.source.batch_size, self._wait_seconds)
        if not batch:
            return 0
        deadline = time.monotonic() + self.source.batching_window_seconds
        while len(batch) < self.source.batch_size and time.monotonic() < deadline and not self._stop.is_set():
            remaining = max(0, int(deadline - time.monotonic()))
            more = self._receive(self.source.batch_size - len(batch), min(remaining, 1))
            batch.extend(more)
        message_ids = [str(m["MessageId"]) for m in batch]
        result: dict[str, Any] | None
        try:
            result = self._invoke(self.source.function_id, sqs_event(batch, self.source.queue_arn))
        except FunctionFailed as exc:
            logger.warning(
                "%s failed on a batch of %d from %s: %s",
                self.source.function_id,
                len(batch),
                self.source.queue_name,
                exc,
            )
            result = None
        deleted = set(messages_to_delete(message_ids, result, self.source.report_batch_item_failures))
        handles = {str(m["MessageId"]): str(m["ReceiptHandle"]) for m in batch}
        self._delete([handles[i] for i in message_ids if i in deleted])
        if self._failed_visibility is not None:
            self._release([handles[i] for i in message_ids if i not in deleted])
        if self._on_batch is not None:
            self._on_batch(self.source, len(batch), len(deleted))
        return len(batch)

    def _delete(self, receipt_handles: list[str]) -> None:
        for start in range(0, len(receipt_handles), MAX_RECEIVE):
            chunk = receipt_handles[start : start + MAX_RECEIVE]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(chunk)],
            )

    def _release(self, receipt_handles: list[str]) -> None:
        for start in range(0, len(receipt_handles), MAX_RECEIVE):
            chunk = receipt_handles[start : start + MAX_RECEIVE]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": self._failed_visibility}
                    for n, handle in enumerate(chunk)
                ],
            )
