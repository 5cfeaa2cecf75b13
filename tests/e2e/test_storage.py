"""No plain API key is stored anywhere (S2): every item of every table, every parameter and
every secret in the runtime's moto is searched for every key handed out in this session."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalRuntime, bearer

pytestmark = pytest.mark.e2e


def _stored_texts(runtime: LocalRuntime) -> list[str]:
    """Everything the moto server holds that a key could hide in, as text."""
    texts: list[str] = []
    dynamodb = runtime.aws("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            texts.extend(json.dumps(item) for item in page["Items"])
    ssm = runtime.aws("ssm")
    for page in ssm.get_paginator("describe_parameters").paginate():
        for parameter in page["Parameters"]:
            value = ssm.get_parameter(Name=parameter["Name"], WithDecryption=True)["Parameter"]["Value"]
            texts.append(f"{parameter['Name']}={value}")
    secrets = runtime.aws("secretsmanager")
    for page in secrets.get_paginator("list_secrets").paginate():
        for secret in page["SecretList"]:
            texts.append(secrets.get_secret_value(SecretId=secret["ARN"]).get("SecretString", ""))
    return texts


def test_no_plain_key_is_stored_anywhere(
    http: httpx.Client, runtime: LocalRuntime, make_tenant: Any, issued_keys: list[str]
) -> None:
    # Given keys of every kind: admin, demo, owner and member, a rotated one, all used once
    tenant = make_tenant("Storage check")
    rotated = http.post(f"/v1/keys/{tenant.member_key_id}/rotate", headers=bearer(tenant.owner_key))
    assert rotated.status_code == 201, rotated.text
    issued_keys.append(rotated.json()["key"])
    for key in issued_keys:
        http.get("/v1/me", headers=bearer(key))
    # When everything stored is read back
    texts = _stored_texts(runtime)
    everything = "\n".join(texts)
    # Then the tables hold the keys' records, but neither a key nor its secret part
    assert any(tenant.owner_key_id in text for text in texts)
    for key in issued_keys:
        secret_part = key.split("_", 2)[2]
        assert key not in everything
        assert secret_part not in everything
