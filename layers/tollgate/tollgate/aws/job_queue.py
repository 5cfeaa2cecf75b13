"""The image jobs queue in SQS (``JobQueue``): a message per job (``tollgate.images.jobs.message_body``).

Messages go in batches of ten (``SendMessageBatch``); the entries SQS refuses are tried once
more, and what is still refused is reported to the caller, which releases those jobs' credits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from tollgate.aws.clients import client
from tollgate.images.jobs import JobMessage, message_body

logger = Logger()
SQS_BATCH = 10


class SqsJobQueue:
    """``JobQueue`` over one SQS queue."""

    def __init__(self, queue_url: str, sqs_client: Any | None = None) -> None:
        self._url = queue_url
        self._client = sqs_client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("sqs")
        return self._client

    def send(self, messages: Sequence[JobMessage]) -> list[JobMessage]:
        unsent: list[JobMessage] = []
        for start in range(0, len(messages), SQS_BATCH):
            chunk = list(messages[start : start + SQS_BATCH])
            for _ in range(2):
                chunk = self._send_batch(chunk)
                if not chunk:
                    break
            unsent.extend(chunk)
        return unsent

    def _send_batch(self, chunk: list[JobMessage]) -> list[JobMessage]:
        try:
            answer = self.client.send_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(n), "MessageBody": message_body(m)} for n, m in enumerate(chunk)],
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("sending image jobs failed", extra={"error": str(exc), "jobs": len(chunk)})
            return chunk
        failed = {str(entry.get("Id")) for entry in answer.get("Failed") or []}
        return [m for n, m in enumerate(chunk) if str(n) in failed]
