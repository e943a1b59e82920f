"""The Reusely stand-in: keys, catalog, mail-in checkout and its per-email limit."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.sandbox import create_app

API_KEY = "test-api-key-value"
SECRET_KEY = "test-secret-key-value"
TENANT = "test-tenant-value"
KEYS = {"x-api-key": API_KEY}
CATALOG = "/api/v2/public/catalog"
MAIL_IN = "/api/v3/public/offer/mail-in"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> TestClient:
    return TestClient(create_app(api_key=API_KEY, secret_key=SECRET_KEY, clock=clock))


def offer(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "payout_method": "paypal",
        "offer_detail": [{"product_id": 1, "condition_id": 2}],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def assert_no_credentials(text: str) -> None:
    for value in (API_KEY, SECRET_KEY, TENANT):
        assert value not in text


# --- keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}, {"X-API-KEY": API_KEY + "x"}],
)
def test_requests_without_the_right_api_key_get_401(
    client: TestClient, headers: dict[str, str]
) -> None:
    for method, path in (("GET", f"{CATALOG}/categories"), ("POST", MAIL_IN), ("GET", "/nope")):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"status_code": 401, "message": "Unauthenticated."}
        assert_no_credentials(response.text)


def test_api_key_header_name_is_case_insensitive(client: TestClient) -> None:
    response = client.get(f"{CATALOG}/categories", headers={"X-Api-Key": API_KEY})
    assert response.status_code == 200


def test_tenant_id_is_required_when_configured() -> None:
    app = create_app(api_key=API_KEY, secret_key=SECRET_KEY, tenant_id=TENANT)
    with TestClient(app) as client:
        url = f"{CATALOG}/categories"
        assert client.get(url, headers=KEYS).status_code == 401
        assert client.get(url, headers={**KEYS, "x-tenant-id": "other"}).status_code == 401
        response = client.get(url, headers={**KEYS, "x-tenant-id": TENANT})
        assert response.status_code == 200
        assert_no_credentials(response.text)


def test_tenant_id_is_ignored_when_not_configured(client: TestClient) -> None:
    response = client.get(f"{CATALOG}/categories", headers={**KEYS, "x-tenant-id": "any"})
    assert response.status_code == 200


def test_admin_orders_need_the_secret_key_too(client: TestClient) -> None:
    url = "/api/v2/admin/orders"
    assert client.get(url, headers=KEYS).status_code == 401
    assert client.get(url, headers={**KEYS, "x-secret-key": "wrong"}).status_code == 401
    assert client.get(url, headers={"x-secret-key": SECRET_KEY}).status_code == 401
    response = client.get(url, headers={**KEYS, "x-secret-key": SECRET_KEY})
    assert response.status_code == 200
    result = response.json()["result"]
    assert len(result["data"]) == 2
    assert result["total"] == 2
    assert_no_credentials(response.text)


def test_admin_orders_filter_by_buyback_type(client: TestClient) -> None:
    headers = {**KEYS, "x-secret-key": SECRET_KEY}
    response = client.get("/api/v2/admin/orders?buyback_type=mail-in", headers=headers)
    assert [o["buyback_type"] for o in response.json()["result"]["data"]] == ["mail-in"]


def test_the_secret_key_alone_opens_no_admin_path_beyond_the_known_one(
    client: TestClient,
) -> None:
    headers = {**KEYS, "x-secret-key": SECRET_KEY}
    response = client.get("/api/v2/admin/pricing", headers=headers)
    assert response.status_code == 404


# --- catalog ------------------------------------------------------------------


def test_categories_come_in_the_envelope_with_a_paginator(client: TestClient) -> None:
    response = client.get(f"{CATALOG}/categories", headers=KEYS)
    assert response.status_code == 200
    body = response.json()
    assert body["status_code"] == 200
    assert isinstance(body["message"], str)
    result = body["result"]
    assert [c["slug"] for c in result["data"]] == ["phones", "tablets"]
    assert result["current_page"] == 1
    assert result["last_page"] == 1
    assert result["per_page"] >= 2
    assert result["total"] == 2


def test_page_query_parameter_is_honoured(client: TestClient) -> None:
    result = client.get(f"{CATALOG}/categories?page=2", headers=KEYS).json()["result"]
    assert result["current_page"] == 2
    assert result["data"] == []
    assert result["total"] == 2


def test_a_page_that_is_not_a_positive_number_means_page_one(client: TestClient) -> None:
    for page in ("0", "-1", "abc"):
        result = client.get(f"{CATALOG}/categories?page={page}", headers=KEYS).json()["result"]
        assert result["current_page"] == 1
        assert len(result["data"]) == 2


def test_category_brand_lists_the_devices_in_a_category(client: TestClient) -> None:
    result = client.get(f"{CATALOG}/category-brand/phones?page=1", headers=KEYS).json()["result"]
    pairs = [(d["brand"]["slug"], d["slug"]) for d in result["data"]]
    assert pairs == [("apple", "iphone"), ("samsung", "galaxy")]
    tablets = client.get(f"{CATALOG}/category-brand/tablets", headers=KEYS).json()["result"]
    assert [(d["brand"]["slug"], d["slug"]) for d in tablets["data"]] == [("apple", "ipad")]


def test_model_device_lists_models(client: TestClient) -> None:
    response = client.get(f"{CATALOG}/model-device/apple/iphone", headers=KEYS)
    models = response.json()["result"]["data"]
    assert [m["slug"] for m in models] == ["iphone-15", "iphone-14"]
    assert all(isinstance(m["model_id"], int) for m in models)


def test_spec_gives_size_choices(client: TestClient) -> None:
    response = client.get(f"{CATALOG}/spec?brand=apple&model=iphone-15", headers=KEYS)
    choices = response.json()["result"]["size"]["choices"]
    assert choices == [{"slug": "128gb", "name": "128 GB"}, {"slug": "256gb", "name": "256 GB"}]


def test_spec_needs_brand_and_model(client: TestClient) -> None:
    response = client.get(f"{CATALOG}/spec", headers=KEYS)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"brand", "model"}


def test_condition_gives_prices_terms_and_the_product(client: TestClient) -> None:
    query = "brand=apple&spec[device]=iphone&spec[model]=iphone-15&spec[size]=256gb"
    result = client.get(f"{CATALOG}/condition?{query}", headers=KEYS).json()["result"]
    assert result["product"]["product_id"] == 2
    conditions = result["conditions"]
    assert [c["id"] for c in conditions] == [1, 2, 3]
    prices = [c["price"] for c in conditions]
    assert prices == sorted(prices, reverse=True)
    assert all(p > 0 for p in prices)
    for c in conditions:
        assert isinstance(c["terms"]["title"], str)
        assert all(isinstance(line, str) for line in c["terms"]["content"])


def test_condition_needs_brand_model_and_size(client: TestClient) -> None:
    response = client.get(f"{CATALOG}/condition?brand=apple", headers=KEYS)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"spec[model]", "spec[size]"}


@pytest.mark.parametrize(
    "path",
    [
        "/category-brand/watches",
        "/model-device/apple/galaxy",
        "/spec?brand=samsung&model=iphone-15",
        "/condition?brand=apple&spec[model]=iphone-15&spec[size]=1tb",
        "/brands",
        "/categories/extra",
    ],
)
def test_unknown_catalog_things_get_404_in_the_envelope(client: TestClient, path: str) -> None:
    response = client.get(CATALOG + path, headers=KEYS)
    assert response.status_code == 404
    body = response.json()
    assert body["status_code"] == 404
    assert isinstance(body["message"], str)


def test_wrong_method_gets_405_in_the_envelope(client: TestClient) -> None:
    response = client.post(f"{CATALOG}/categories", headers=KEYS)
    assert response.status_code == 405
    assert response.json()["status_code"] == 405
    assert "GET" in response.headers["allow"]


# --- mail-in checkout -----------------------------------------------------------


def test_mail_in_creates_an_offer(client: TestClient) -> None:
    response = client.post(MAIL_IN, headers=KEYS, json=offer())
    assert response.status_code == 201
    body = response.json()
    assert body["status_code"] == 201
    assert body["message"] == "Offer created"
    result = body["result"]
    assert {"offer_id", "box_id", "auth_token"} <= set(result)
    second = client.post(MAIL_IN, headers=KEYS, json=offer()).json()["result"]
    assert second["offer_id"] != result["offer_id"]
    assert second["auth_token"] != result["auth_token"]
    assert_no_credentials(response.text)


def test_mail_in_accepts_a_phone_instead_of_an_email(client: TestClient) -> None:
    response = client.post(MAIL_IN, headers=KEYS, json=offer(email=..., phone="+1 555 010 9999"))
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"first_name": ...}, "first_name"),
        ({"last_name": "  "}, "last_name"),
        ({"payout_method": 3}, "payout_method"),
        ({"offer_detail": ...}, "offer_detail"),
        ({"offer_detail": []}, "offer_detail"),
        ({"offer_detail": [1]}, "offer_detail.0"),
        ({"offer_detail": [{"condition_id": 1}]}, "offer_detail.0.product_id"),
        ({"offer_detail": [{"product_id": 999, "condition_id": 1}]}, "offer_detail.0.product_id"),
        ({"offer_detail": [{"product_id": 1, "condition_id": "1"}]}, "offer_detail.0.condition_id"),
        ({"email": ..., "phone": None}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": ..., "phone": "12"}, "phone"),
    ],
)
def test_mail_in_validation_errors_name_the_field(
    client: TestClient, overrides: dict[str, Any], field: str
) -> None:
    response = client.post(MAIL_IN, headers=KEYS, json=offer(**overrides))
    assert response.status_code == 400
    body = response.json()
    assert body["status_code"] == 400
    assert isinstance(body["message"], str)
    assert field in body["errors"]
    assert all(isinstance(m, str) for m in body["errors"][field])


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_mail_in_refuses_a_body_that_is_not_a_json_object(
    client: TestClient, content: bytes
) -> None:
    response = client.post(MAIL_IN, headers=KEYS, content=content)
    assert response.status_code == 400
    assert response.json()["status_code"] == 400


def test_mail_in_allows_five_per_hour_per_email_then_429(
    client: TestClient, clock: FakeClock
) -> None:
    emails = ["ada@example.com", " ADA@example.com", "Ada@Example.COM ", "ada@example.com"]
    emails.append("ada@example.com")
    for email in emails:
        assert client.post(MAIL_IN, headers=KEYS, json=offer(email=email)).status_code == 201
    refused = client.post(MAIL_IN, headers=KEYS, json=offer(email="  ada@EXAMPLE.com"))
    assert refused.status_code == 429
    assert refused.json() == {"status_code": 429, "message": "Too many requests for this email"}
    other = client.post(MAIL_IN, headers=KEYS, json=offer(email="bob@example.com"))
    assert other.status_code == 201


def test_mail_in_limit_is_a_moving_hour(client: TestClient, clock: FakeClock) -> None:
    for _ in range(3):
        assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201
    clock.now += 1800
    for _ in range(2):
        assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201
    clock.now += 1799
    assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 429
    clock.now += 1  # the first three are now an hour old
    for _ in range(3):
        assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201
    assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 429


def test_mail_in_limit_belongs_to_one_app_instance(clock: FakeClock) -> None:
    first = TestClient(create_app(api_key=API_KEY, secret_key=SECRET_KEY, clock=clock))
    second = TestClient(create_app(api_key=API_KEY, secret_key=SECRET_KEY, clock=clock))
    for _ in range(5):
        assert first.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201
    assert first.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 429
    assert second.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201


def test_phone_only_checkouts_are_not_limited_by_email(client: TestClient) -> None:
    for _ in range(7):
        body = offer(email=..., phone="+15550109999")
        assert client.post(MAIL_IN, headers=KEYS, json=body).status_code == 201


def test_unauthenticated_checkouts_do_not_count(client: TestClient) -> None:
    for _ in range(10):
        assert client.post(MAIL_IN, json=offer()).status_code == 401
    assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201


def test_no_debug_endpoints(client: TestClient) -> None:
    for path in ("/__sandbox/requests", "/", "/docs", "/openapi.json"):
        assert client.get(path, headers=KEYS).status_code == 404
