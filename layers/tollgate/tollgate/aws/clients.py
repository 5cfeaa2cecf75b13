"""boto3 clients, made on first use and kept for the life of the process (warm starts).

boto3 reads ``AWS_ENDPOINT_URL`` itself, which is how the local runtime points every
function at the moto server; nothing here knows about it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=2, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)


def reset() -> None:
    """Forget every client (tests that switch between moto in-process and a moto server)."""
    client.cache_clear()
