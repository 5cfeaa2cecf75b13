"""The exact response cache in S3 (S12).

One JSON object per entry at ``cache/<kind>/<org>/<aa>/<digest>.json`` holding the answer and
its ``expires_at``; a read past it is a miss (the TTL is exact). Each object carries a tag
``expiry`` (``1d``, ``7d``, ``30d``, ``90d``: the shortest class that covers its TTL), and the
bucket's lifecycle rules (``template.yaml``) delete objects of each class after that many days.

The cache is best effort: a failing read is a miss and a failing write is logged, never the
client's error (the request has been paid for by then).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from tollgate.aws.clients import client
from tollgate.generation.cache_key import CacheKind, cache_object_key

logger = Logger()

EXPIRY_CLASSES_DAYS = (1, 7, 30, 90)
"""The lifecycle classes of the bucket (its rules must match these tags)."""
EXPIRY_TAG = "expiry"


def expiry_class(ttl_seconds: int) -> str:
    """The tag value of the shortest lifecycle class that keeps an entry ``ttl_seconds``."""
    for days in EXPIRY_CLASSES_DAYS:
        if ttl_seconds <= days * 86_400:
            return f"{days}d"
    return f"{EXPIRY_CLASSES_DAYS[-1]}d"


class S3ResponseCache:
    """``ResponseCache`` over one S3 bucket."""

    def __init__(self, bucket: str, s3_client: Any | None = None) -> None:
        self._bucket = bucket
        self._client = s3_client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("s3")
        return self._client

    def get(self, kind: str, org_id: str, digest: str, now: datetime) -> dict[str, Any] | None:
        key = cache_object_key(_kind(kind), org_id, digest)
        try:
            raw = self.client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                logger.warning("cache read failed; answering as a miss", extra={"error": str(exc)})
            return None
        except BotoCoreError as exc:
            logger.warning("cache read failed; answering as a miss", extra={"error": str(exc)})
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(entry, dict) or int(entry.get("expires_at", 0)) <= int(now.timestamp()):
            return None
        answer = entry.get("answer")
        return answer if isinstance(answer, dict) else None

    def put(
        self, kind: str, org_id: str, digest: str, answer: dict[str, Any], ttl_seconds: int, now: datetime
    ) -> None:
        key = cache_object_key(_kind(kind), org_id, digest)
        expires = now + timedelta(seconds=ttl_seconds)
        body = json.dumps(
            {"expires_at": int(expires.timestamp()), "answer": answer},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        try:
            self.client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body.encode("utf-8"),
                ContentType="application/json",
                Tagging=urlencode({EXPIRY_TAG: expiry_class(ttl_seconds)}),
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("cache write failed", extra={"error": str(exc)})


def _kind(kind: str) -> CacheKind:
    if kind == "chat":
        return "chat"
    if kind == "completion":
        return "completion"
    if kind == "embedding":
        return "embedding"
    if kind == "image":
        return "image"
    raise ValueError(f"unknown cache kind {kind!r}")
