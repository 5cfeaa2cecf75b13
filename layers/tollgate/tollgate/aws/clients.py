"""boto3 clients, made on first use and kept for the life of the process (warm starts).

boto3 reads ``AWS_ENDPOINT_URL`` itself, which is how the local runtime points every
function at the moto server; nothing here knows about it.

boto3 is imported here, on first use, and X-Ray's instrumentation of botocore is installed
just before the first client: a handler's cold start does not pay for the AWS SDK when its
request needs no AWS call (a health check, a malformed key, invalid input), and functions
create their ``Tracer(auto_patch=False)``.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=2, read_timeout=10)
# S3 presigns with Signature Version 4 (boto3 would presign with SigV2 in us-east-1).
_SERVICE_CONFIG = {"s3": Config(signature_version="s3v4")}


# One session for every client of the process: each botocore session parses the SDK's JSON
# models (endpoints, partitions, the service) again, ~25 ms a client at a cold start. Sessions
# are not thread-safe, so clients are made under a lock (made once, they are).
_session: boto3.session.Session | None = None
_lock = threading.Lock()


@cache
def client(service: str) -> Any:
    global _session
    trace_aws_calls()
    config = _CONFIG.merge(_SERVICE_CONFIG[service]) if service in _SERVICE_CONFIG else _CONFIG
    with _lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(service, config=config)


@cache
def trace_aws_calls() -> None:
    """X-Ray subsegments for every AWS call (a no-op when tracing is disabled)."""
    from aws_lambda_powertools import Tracer

    Tracer().patch(["botocore"])


def reset() -> None:
    """Forget every client and the session (tests that switch between moto in-process and a
    moto server, or change credentials)."""
    global _session
    client.cache_clear()
    with _lock:
        _session = None
