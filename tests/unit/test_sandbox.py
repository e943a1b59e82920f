"""The Reusely stand-in: keys, catalog, mail-in checkout and its per-email limit."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.sandbox import SwitchError, create_app, parse_switches, switches_from_env
from tests.support.http import CATALOG, MAIL_IN

API_KEY = "test-api-key-value"
SECRET_KEY = "test-secret-key-value"
TENANT = "test-tenant-value"
KEYS = {"x-api-key": API_KEY}


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


def test_the_secret_key_opens_no_admin_path_beyond_the_known_ones(client: TestClient) -> None:
    headers = {**KEYS, "x-secret-key": SECRET_KEY}
    for path in ("/api/v2/admin/customers", "/api/v2/admin/products/1", "/api/v2/admin/"):
        assert client.get(path, headers=headers).status_code == 404
    assert client.get("/api/v2/admin/pricing", headers=headers).status_code == 405
    assert client.delete("/api/v2/admin/orders", headers=headers).status_code == 405


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
    assert refused.headers["retry-after"] == "3600"
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


def test_mail_in_429_says_in_whole_seconds_when_the_oldest_slot_frees(
    client: TestClient, clock: FakeClock
) -> None:
    for step in (0.0, 100.0, 100.0, 100.0, 100.0):
        clock.now += step
        assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201
    clock.now += 0.5  # 400.5 s after the first: it frees in 3199.5 s, said as 3200
    refused = client.post(MAIL_IN, headers=KEYS, json=offer())
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "3200"
    clock.now += 3199.25  # 0.25 s left: at least 1
    refused = client.post(MAIL_IN, headers=KEYS, json=offer())
    assert refused.headers["retry-after"] == "1"
    clock.now += 0.25
    assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201


# --- offer from a lead ------------------------------------------------------------

LEAD = "eyJpdiI6InNhbmRib3gtbGVhZC0xIn0"


def from_lead(buyback_type: str = "mail-in") -> str:
    return f"/api/v3/public/offer/{buyback_type}/from-lead"


def lead_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"offer_id": LEAD, "address": "1 Main St", "payout_method": "paypal"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.mark.parametrize(("kind", "normalised"), [("mail-in", "mail-in"), ("1", "mail-in"),
                                                  ("in-store", "in-store"), ("2", "in-store")])
def test_a_demo_lead_becomes_an_offer(client: TestClient, kind: str, normalised: str) -> None:
    response = client.post(from_lead(kind), headers=KEYS, json=lead_body(country="US"))
    assert response.status_code == 200
    body = response.json()
    assert body["status_code"] == 200
    result = body["result"]
    assert result["offer_id"] == 7001
    assert result["box_id"] == "BOX-7001"
    assert result["buyback_type"] == normalised
    assert result["auth_token"]
    assert_no_credentials(response.text)


def test_from_lead_refuses_unknown_leads_types_and_bad_fields(client: TestClient) -> None:
    assert client.post(from_lead("pickup"), headers=KEYS, json=lead_body()).status_code == 404
    unknown = client.post(from_lead(), headers=KEYS, json=lead_body(offer_id="nope"))
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Lead not found."
    cases = [({"address": ...}, "address"), ({"offer_id": 5}, "offer_id"),
             ({"payout_method": " "}, "payout_method"), ({"country": "usa"}, "country"),
             ({"city": 3}, "city"), ({"phone": "12"}, "phone")]
    for overrides, field in cases:
        response = client.post(from_lead(), headers=KEYS, json=lead_body(**overrides))
        assert response.status_code == 400, overrides
        assert field in response.json()["errors"]
    assert client.post(from_lead(), headers=KEYS, content=b"[]").status_code == 400
    assert client.post(from_lead(), json=lead_body()).status_code == 401


# --- admin pricing ----------------------------------------------------------------

ADMIN = {**KEYS, "x-secret-key": SECRET_KEY}
PRICING = "/api/v2/admin/pricing"


def test_product_pricing_lists_each_condition_price(client: TestClient) -> None:
    response = client.get("/api/v2/admin/products/2/pricing", headers=ADMIN)
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["product_id"] == 2
    assert result["name"] == "iPhone 15 256 GB"
    assert [(p["name"], p["price"], p["is_custom_price"]) for p in result["pricing"]] == [
        ("Flawless", 480, False), ("Good", 360, False), ("Broken", 144, False)]
    for path in ("/api/v2/admin/products/99/pricing", "/api/v2/admin/products/x/pricing"):
        assert client.get(path, headers=ADMIN).status_code == 404
    assert client.get("/api/v2/admin/products/2/pricing", headers=KEYS).status_code == 401


def test_a_price_set_by_an_admin_is_what_the_catalog_shows(client: TestClient) -> None:
    body = {"product_id": 2, "conditions": [{"name": "good", "price": 399.5,
                                             "is_custom_price": True}]}
    response = client.post(PRICING, headers=ADMIN, json=body)
    assert response.status_code == 200
    pricing = {p["name"]: p for p in response.json()["result"]["pricing"]}
    assert pricing["Good"] == {"condition_id": 2, "name": "Good", "price": 399.5,
                               "is_custom_price": True}
    assert pricing["Flawless"]["is_custom_price"] is False
    query = "brand=apple&spec[model]=iphone-15&spec[size]=256gb"
    conditions = client.get(f"{CATALOG}/condition?{query}", headers=KEYS).json()["result"]
    assert {c["name"]: c["price"] for c in conditions["conditions"]}["Good"] == 399.5
    again = client.get("/api/v2/admin/products/2/pricing", headers=ADMIN).json()["result"]
    assert again["pricing"][1]["price"] == 399.5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"conditions": [{"name": "Good", "price": 1}]}, "product_id"),
        ({"product_id": 99, "conditions": [{"name": "Good", "price": 1}]}, "product_id"),
        ({"product_id": True, "conditions": [{"name": "Good", "price": 1}]}, "product_id"),
        ({"product_id": 1, "conditions": []}, "conditions"),
        ({"product_id": 1, "conditions": ["Good"]}, "conditions.0"),
        ({"product_id": 1, "conditions": [{"name": "Mint", "price": 1}]}, "conditions.0.name"),
        ({"product_id": 1, "conditions": [{"name": "Good", "price": -1}]}, "conditions.0.price"),
        ({"product_id": 1, "conditions": [{"name": "Good", "price": "9"}]}, "conditions.0.price"),
        ({"product_id": 1, "conditions": [{"name": "Good", "price": 9, "is_custom_price": 1}]},
         "conditions.0.is_custom_price"),
    ],
)
def test_pricing_validation_names_the_field_and_changes_nothing(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post(PRICING, headers=ADMIN, json=body)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    result = client.get("/api/v2/admin/products/1/pricing", headers=ADMIN).json()["result"]
    assert not any(p["is_custom_price"] for p in result["pricing"])


def test_prices_belong_to_one_app_instance(client: TestClient) -> None:
    body = {"product_id": 1, "conditions": [{"name": "Broken", "price": 1}]}
    assert client.post(PRICING, headers=ADMIN, json=body).status_code == 200
    other = TestClient(create_app(api_key=API_KEY, secret_key=SECRET_KEY))
    result = other.get("/api/v2/admin/products/1/pricing", headers=ADMIN).json()["result"]
    assert result["pricing"][2]["price"] == 126


# --- switches: Reusely on a bad day ------------------------------------------------

STATE = "/_sandbox/state"
UNAUTHENTICATED = {"status_code": 401, "message": "Unauthenticated."}
EVERYWHERE = [("GET", f"{CATALOG}/categories"), ("POST", MAIL_IN), ("GET", "/api/v2/admin/orders"),
              ("POST", from_lead()), ("GET", "/nope")]


def test_switches_start_off_and_the_state_shows_them(client: TestClient) -> None:
    response = client.get(STATE)
    assert response.status_code == 200
    assert response.json() == {"lapsed": False, "accept_api_key": None, "rate_limit": None}


def test_a_lapsed_subscription_gets_401_everywhere_until_reset(client: TestClient) -> None:
    response = client.post(STATE, json={"lapsed": True})
    assert response.status_code == 200
    assert response.json()["lapsed"] is True
    for method, path in EVERYWHERE:
        refused = client.request(method, path, headers=ADMIN, json=offer())
        assert refused.status_code == 401, path
        assert refused.json() == UNAUTHENTICATED
    # A refused checkout is not counted against the email.
    assert client.delete(STATE).json()["lapsed"] is False
    for _ in range(5):
        assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201


def test_a_regenerated_key_is_the_only_one_accepted(client: TestClient) -> None:
    response = client.post(STATE, json={"accept_api_key": "the-new-key"})
    assert response.json()["accept_api_key"] == "set"
    assert "the-new-key" not in response.text
    old = client.get(f"{CATALOG}/categories", headers=KEYS)
    assert old.status_code == 401
    assert old.json() == UNAUTHENTICATED
    new = client.get(f"{CATALOG}/categories", headers={"x-api-key": "the-new-key"})
    assert new.status_code == 200
    admin = {"x-api-key": "the-new-key", "x-secret-key": SECRET_KEY}
    assert client.get("/api/v2/admin/orders", headers=admin).status_code == 200
    assert client.get("/api/v2/admin/orders", headers={"x-api-key": "the-new-key"}).status_code \
        == 401
    client.post(STATE, json={})
    assert client.get(f"{CATALOG}/categories", headers=KEYS).status_code == 200


@pytest.mark.parametrize("retry_after", [30, "30", "Wed, 21 Oct 2037 07:28:00 GMT"])
def test_rate_limit_on_a_path_prefix_answers_429_with_retry_after(
    client: TestClient, retry_after: int | str
) -> None:
    switch = {"rate_limit": {"path_prefix": MAIL_IN, "retry_after": retry_after}}
    shown = client.post(STATE, json=switch).json()["rate_limit"]
    assert shown == {"path_prefix": MAIL_IN, "retry_after": str(retry_after)}
    refused = client.post(MAIL_IN, headers=KEYS, json=offer())
    assert refused.status_code == 429
    assert refused.json() == {"status_code": 429, "message": "Too Many Attempts."}
    assert refused.headers["retry-after"] == str(retry_after)
    assert client.get(f"{CATALOG}/categories", headers=KEYS).status_code == 200
    # Keys are still checked first, as Reusely would.
    assert client.post(MAIL_IN, json=offer()).status_code == 401
    client.delete(STATE)
    assert client.post(MAIL_IN, headers=KEYS, json=offer()).status_code == 201


def test_rate_limit_on_every_path_and_without_retry_after(client: TestClient) -> None:
    client.post(STATE, json={"rate_limit": {}})
    for method, path in EVERYWHERE:
        refused = client.request(method, path, headers=ADMIN, json=offer())
        assert refused.status_code == 429, path
        assert "retry-after" not in refused.headers
    assert client.get(STATE).status_code == 200  # the switch itself is never limited


def test_posting_the_state_replaces_every_switch(client: TestClient) -> None:
    client.post(STATE, json={"lapsed": True, "rate_limit": {"retry_after": 5}})
    state = client.post(STATE, json={"rate_limit": {"path_prefix": "/api/v2/"}}).json()
    assert state == {"lapsed": False, "accept_api_key": None,
                     "rate_limit": {"path_prefix": "/api/v2/", "retry_after": None}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lapsed": "yes"}, "lapsed"),
        ({"accept_api_key": ""}, "accept_api_key"),
        ({"accept_api_key": "a\nb"}, "accept_api_key"),
        ({"rate_limit": "on"}, "rate_limit"),
        ({"rate_limit": {"path_prefix": "api"}}, "rate_limit.path_prefix"),
        ({"rate_limit": {"retry_after": -1}}, "rate_limit.retry_after"),
        ({"rate_limit": {"retry_after": "soon"}}, "rate_limit.retry_after"),
        ({"rate_limit": {"retry_after": 1.5}}, "rate_limit.retry_after"),
        ({"rate_limit": {"retry_after": True}}, "rate_limit.retry_after"),
        ({"rate_limit": {"prefix": "/"}}, "rate_limit"),
        ({"lapse": True}, "body"),
    ],
)
def test_bad_switches_are_refused_and_change_nothing(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    client.post(STATE, json={"lapsed": True})
    response = client.post(STATE, json=body)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert client.get(STATE).json()["lapsed"] is True
    for content in (b"[]", b"{", b"\xff"):
        assert client.post(STATE, content=content).status_code == 400


def test_the_switch_endpoint_refuses_anything_that_came_through_a_proxy(
    client: TestClient,
) -> None:
    for headers in ({"x-forwarded-for": "127.0.0.1"}, {"forwarded": "for=127.0.0.1"}):
        assert client.post(STATE, headers=headers, json={"lapsed": True}).status_code == 404
        assert client.get(STATE, headers=headers).status_code == 404
    assert client.get(STATE).json()["lapsed"] is False
    assert client.put(STATE, json={}).status_code == 405


def test_switches_can_be_set_at_start_from_the_environment() -> None:
    env = {"SANDBOX_LAPSED": "true", "SANDBOX_ACCEPT_API_KEY": "k2",
           "SANDBOX_RATE_LIMIT": "/api/v3/", "SANDBOX_RETRY_AFTER": "Wed, 21 Oct 2037 07:28:00 GMT"}
    switches = switches_from_env(env)
    assert switches == parse_switches({"lapsed": True, "accept_api_key": "k2", "rate_limit": {
        "path_prefix": "/api/v3/", "retry_after": "Wed, 21 Oct 2037 07:28:00 GMT"}})
    assert switches_from_env({}) == parse_switches({})
    assert switches_from_env({"SANDBOX_LAPSED": "0", "SANDBOX_RATE_LIMIT": "/"}) == \
        parse_switches({"rate_limit": {"path_prefix": "/", "retry_after": None}})
    limited = switches_from_env({"SANDBOX_RATE_LIMIT": "/", "SANDBOX_RETRY_AFTER": "7"})
    app = create_app(api_key=API_KEY, secret_key=SECRET_KEY, switches=limited)
    refused = TestClient(app).get(f"{CATALOG}/categories", headers=KEYS)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    "env",
    [{"SANDBOX_LAPSED": "maybe"}, {"SANDBOX_RETRY_AFTER": "5"},
     {"SANDBOX_RATE_LIMIT": "api"}, {"SANDBOX_RATE_LIMIT": "/", "SANDBOX_RETRY_AFTER": "-5"}],
)
def test_bad_switch_environment_is_a_clear_error(env: dict[str, str]) -> None:
    with pytest.raises(SwitchError) as info:
        switches_from_env(env)
    assert str(info.value)
    assert "Traceback" not in str(info.value)
