"""The official ``openai`` SDK against the local runtime with the demo key (S6): chat,
embeddings and the model list on the mock models; the balance drops by exactly the feature's
price, and the usage log has the entries."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import LocalRuntime, bearer
from tollgate.credits.amounts import credits_of_units
from tollgate.metering.models import Usage
from tollgate.metering.pricing import default_pricing

pytestmark = pytest.mark.e2e


def balance(http: httpx.Client, runtime: LocalRuntime) -> Decimal:
    response = http.get("/v1/credits/balance", headers=bearer(runtime.demo_key))
    assert response.status_code == 200, response.text
    return Decimal(str(json.loads(response.text, parse_float=Decimal)["balance"]))


def price(feature: str, model: str, input_tokens: int, output_tokens: int = 0) -> Decimal:
    provider, _, name = model.partition("/")
    usage = Usage(provider=provider, model=name, input_tokens=input_tokens, output_tokens=output_tokens)
    return credits_of_units(default_pricing().charge(feature, usage).credits)


@pytest.fixture(scope="module")
def client(http: httpx.Client, runtime: LocalRuntime) -> OpenAI:
    """The SDK on the runtime, after the demo org got 10 credits from the admin."""
    granted = http.post(
        f"/v1/orgs/{runtime.demo_org_id}/credits/grants",
        json={"amount": 10, "kind": "grant", "note": "e2e openai sdk"},
        headers={**bearer(runtime.admin_key), "Idempotency-Key": f"e2e-sdk-{uuid.uuid4()}"},
    )
    assert granted.status_code == 201, granted.text
    return OpenAI(base_url=f"{runtime.base_url}/v1", api_key=runtime.demo_key, max_retries=0, timeout=30)


def test_chat_completions_create_charges_the_chat_price(
    client: OpenAI, http: httpx.Client, runtime: LocalRuntime
) -> None:
    # Given the balance, and a prompt the cache has never seen
    before = balance(http, runtime)
    prompt = f"Tell me about toll gates ({uuid.uuid4()})."
    # When the SDK asks the mock chat model
    raw = client.chat.completions.with_raw_response.create(
        model="mock/chat", messages=[{"role": "user", "content": prompt}], max_tokens=64
    )
    completion = raw.parse()
    # Then a chat completion comes back, not from the cache
    assert completion.choices[0].message.content
    assert completion.model == "mock/chat"
    assert raw.headers["x-cache"] == "MISS"
    assert completion.usage is not None
    # And the balance dropped by exactly the chat feature's price of that usage
    expected = price("chat", "mock/chat", completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert Decimal(raw.headers["x-credits-charged"]) == expected
    assert balance(http, runtime) == before - expected
    # And the usage log has the entry
    entry = log_entry(runtime, raw.headers["x-request-id"])
    assert entry["status"]["S"] == "completed"
    assert entry["model"]["S"] == "mock/chat"


def test_embeddings_create_charges_the_embedding_price(
    client: OpenAI, http: httpx.Client, runtime: LocalRuntime
) -> None:
    before = balance(http, runtime)
    raw = client.embeddings.with_raw_response.create(
        model="mock/embed", input=[f"toll {uuid.uuid4()}", "gate"]
    )
    result = raw.parse()
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 256
    expected = price("embedding", "mock/embed", result.usage.prompt_tokens)
    assert balance(http, runtime) == before - expected
    assert log_entry(runtime, raw.headers["x-request-id"])["feature"]["S"] == "embedding"


def test_models_list_shows_the_mock_models(client: OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"mock/chat", "mock/embed"} <= ids


def test_the_same_request_again_is_a_free_hit(
    client: OpenAI, http: httpx.Client, runtime: LocalRuntime
) -> None:
    messages = [{"role": "user", "content": f"Cache me ({uuid.uuid4()})"}]
    client.chat.completions.create(model="mock/chat", messages=messages)
    before = balance(http, runtime)
    again = client.chat.completions.with_raw_response.create(model="mock/chat", messages=messages)
    assert again.headers["x-cache"] == "HIT"
    assert balance(http, runtime) == before
    assert log_entry(runtime, again.headers["x-request-id"])["cache_hit"]["BOOL"] is True


def log_entry(runtime: LocalRuntime, request_id: str) -> dict[str, dict[str, object]]:
    """The usage log entry of ``request_id``, read from the runtime's table."""
    dynamodb = runtime.aws("dynamodb")
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    for table in dynamodb.list_tables()["TableNames"]:
        items = dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"ORG#{runtime.demo_org_id}#LOG#{day}"}},
        )["Items"]
        found = [item for item in items if item["request_id"]["S"] == request_id]
        if found:
            return dict(found[0])
    raise AssertionError(f"no usage log entry for {request_id}")
