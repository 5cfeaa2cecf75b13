"""Image assets in S3 (``AssetStore``): objects written only if absent, listed with their
metadata, read with a size bound, and handed out as presigned GET URLs (the bucket is private:
all public access blocked, objects owned by the bucket owner).

Presigned URLs use Signature Version 4 and expire after ``ASSET_URL_TTL_SECONDS``. Locally the
clients point at the moto server (``AWS_ENDPOINT_URL``), so the URLs the runtime hands out
download from it, on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError

from tollgate.aws.clients import client
from tollgate.errors import PayloadTooLarge
from tollgate.images.jobs import StoredObject

_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_ABSENT = {"NoSuchKey", "404", "NotFound"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3AssetStore:
    """``AssetStore`` over one bucket."""

    def __init__(self, bucket: str, s3_client: Any | None = None) -> None:
        self._bucket = bucket
        self._client = s3_client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("s3")
        return self._client

    def put_new(self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        try:
            self.client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=dict(metadata),
                IfNoneMatch="*",  # S3's conditional write: the first writer's object stays
            )
        except ClientError as exc:
            if _code(exc) in _EXISTS:
                return False
            raise
        return True

    def objects(self, prefix: str) -> list[StoredObject]:
        listed = self.client.list_objects_v2(Bucket=self._bucket, Prefix=prefix).get("Contents") or []
        found = []
        for entry in listed:
            try:
                head = self.client.head_object(Bucket=self._bucket, Key=entry["Key"])
            except ClientError as exc:
                if _code(exc) in _ABSENT:
                    continue
                raise
            found.append(
                StoredObject(
                    str(entry["Key"]), int(head.get("ContentLength", 0)), dict(head.get("Metadata") or {})
                )
            )
        return found

    def read(self, key: str, max_bytes: int) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _ABSENT:
                return None
            raise
        if int(answer.get("ContentLength", 0)) > max_bytes:
            answer["Body"].close()
            raise PayloadTooLarge(f"The image is over {max_bytes} bytes")
        data: bytes = answer["Body"].read()
        return data

    def url(self, key: str, ttl_seconds: int) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
        return url

    def key_of_url(self, url: str) -> str | None:
        """The key named by a URL of this bucket, virtual-hosted (``<bucket>.s3...``) or
        path-style (``.../<bucket>/<key>``); the query (a signature) is ignored. Nothing is
        fetched: the caller reads the key from this bucket, after checking it owns it."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme not in ("http", "https"):
            return None
        path = unquote(parts.path)
        host = (parts.hostname or "").lower()
        if host.startswith(f"{self._bucket.lower()}."):
            key = path.lstrip("/")
        elif path.startswith(f"/{self._bucket}/"):
            key = path[len(self._bucket) + 2 :]
        else:
            return None
        return key or None
