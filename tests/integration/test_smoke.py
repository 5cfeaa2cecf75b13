from tests.conftest import Api


def test_health_answers_without_a_key(api: Api) -> None:
    # When
    response = api.get("/v1/health")
    # Then
    assert response.status == 200
    assert response.json()["status"] == "ok"
    assert response.header("X-Request-Id")


def test_me_with_the_admin_key(api: Api, admin_key: str) -> None:
    response = api.get("/v1/me", key=admin_key)
    assert response.status == 200, response.body
    assert response.json()["role"] == "admin"


def test_the_openapi_document_is_served_without_a_key(api: Api) -> None:
    # When
    response = api.get("/v1/openapi.json")
    # Then
    assert response.status == 200, response.body
    assert response.header("Content-Type") == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert "/v1/openapi.json" in document["paths"]
