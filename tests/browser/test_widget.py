"""The example widget in headless Chromium, through the real gateway, to the sandbox.

A shopper completes a mail-in checkout and sees the offer; the sixth for one
email within the hour is refused by the gateway (429 with Retry-After, shown
as a wait time), and Reusely's own 429 (the sandbox's switch) reads the same;
the button stays disabled while a checkout is in flight; a page served from
an origin not on the allow-list gets nothing; and no request or response the
browser sees carries a Reusely credential.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Error, Page, Request, Route, expect

from tests.support.http import MAIL_IN
from tests.support.metrics import series_sum

from .conftest import Stack

pytestmark = pytest.mark.browser

CATEGORIES = "/api/v2/public/catalog/categories"
LIMITED = "We have received several offer requests in a short time."
FORBIDDEN_NAMES = ("x-api-key", "x-secret-key")


CDP_EVENTS = (
    "Network.requestWillBeSent",
    "Network.requestWillBeSentExtraInfo",
    "Network.responseReceived",
    "Network.responseReceivedExtraInfo",
    "Network.loadingFailed",
)


class Traffic:
    """Every request the page makes, with its response, headers and bodies.

    Playwright's view gives bodies; the DevTools protocol's view adds what
    Playwright hides: CORS preflights, and the raw status and headers of a
    response the browser then refused to hand to the page.
    """

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        self.events: list[dict[str, Any]] = []
        page.on("request", self._seen)
        cdp = page.context.new_cdp_session(page)
        for name in CDP_EVENTS:
            cdp.on(name, self._recorder(name))
        cdp.send("Network.enable")

    def _seen(self, request: Request) -> None:
        self.requests.append(request)

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(params: dict[str, Any]) -> None:
            self.events.append({"event": name, **params})

        return record

    def raw_statuses(self, url: str) -> list[int]:
        """Statuses the network saw for `url`, whether or not the page could read them."""
        ids = {
            e["requestId"]
            for e in self.events
            if e["event"] == "Network.requestWillBeSent" and e["request"]["url"] == url
        }
        return [
            e["statusCode"]
            for e in self.events
            if e["event"] == "Network.responseReceivedExtraInfo" and e["requestId"] in ids
        ]

    def records(self) -> list[dict[str, Any]]:
        records = []
        for request in self.requests:
            record: dict[str, Any] = {
                "method": request.method,
                "url": request.url,
                "request_headers": request.all_headers(),
                "request_body": request.post_data,
                "failure": request.failure,
            }
            response = request.response()
            if response is not None:
                record["status"] = response.status
                record["response_headers"] = response.all_headers()
                try:
                    record["response_body"] = response.body().decode(errors="replace")
                except Error as exc:  # e.g. a body the browser did not keep
                    record["response_body"] = None
                    record["response_body_error"] = str(exc).splitlines()[0]
            records.append(record)
        records.extend({"method": "CDP", "url": e["event"], **e} for e in self.events)
        return records


def assert_no_credentials(records: list[dict[str, Any]], stack: Stack) -> None:
    assert records, "the browser made no requests"
    for record in records:
        text = json.dumps(record)
        for value in stack.credentials.values():
            assert value not in text, f"a credential value in {record['method']} {record['url']}"
        for name in FORBIDDEN_NAMES:
            assert name not in text.lower(), f"{name} in {record['method']} {record['url']}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 900, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def traffic(page: Page) -> Traffic:
    return Traffic(page)


def save(records: list[dict[str, Any]], artifacts: Path, name: str) -> None:
    (artifacts / f"{name}-traffic.json").write_text(json.dumps(records, indent=2))


def choose_device(page: Page) -> None:
    page.get_by_label("Category").select_option("phones")
    expect(page.get_by_label("Device")).to_be_enabled()
    page.get_by_label("Device").select_option(label="Apple iPhone")
    expect(page.get_by_label("Model")).to_be_enabled()
    page.get_by_label("Model").select_option("iphone-15")
    expect(page.get_by_label("Storage")).to_be_enabled()
    page.get_by_label("Storage").select_option("128gb")
    page.get_by_role("radio", name=re.compile(r"^Good")).check()


def fill_details(page: Page, email: str) -> None:
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Payout method").select_option("paypal")


def another(page: Page) -> None:
    """From the offer view back to the form, its values kept."""
    page.get_by_role("button", name="Trade in another device").click()
    expect(page.get_by_test_id("offer")).to_be_hidden()
    expect(page.get_by_role("button", name="Get my offer")).to_be_enabled()


def submit(page: Page) -> tuple[int, dict[str, str], Any]:
    """Click the button; the mail-in response's status, headers and JSON body."""
    status = page.get_by_test_id("status")
    with page.expect_response(
        lambda r: r.url.endswith(MAIL_IN) and r.request.method == "POST"
    ) as info:
        page.get_by_role("button", name="Get my offer").click()
    response = info.value
    expect(status).not_to_have_attribute("data-state", "loading")
    return response.status, response.all_headers(), response.json()


def test_checkout_works_and_the_sixth_for_one_email_in_an_hour_is_refused(
    stack: Stack, page: Page, traffic: Traffic, artifacts: Path
) -> None:
    page.goto(stack.page + "/")
    expect(page.locator("#reusely-trade-in")).to_have_attribute("data-ready", "true")
    expect(page.get_by_label("Category").locator("option")).to_have_count(3)
    hint = page.get_by_test_id("conditions-hint")
    expect(hint).to_contain_text("Choose your device and its storage")
    page.screenshot(path=str(artifacts / "widget-start.png"), full_page=True)
    choose_device(page)
    expect(hint).to_have_count(0)
    expect(page.get_by_role("radio")).to_have_count(3)
    fill_details(page, "shopper@example.com")
    expect(page.get_by_role("button", name="Get my offer")).to_contain_text("$315")

    status = page.get_by_test_id("status")
    offer = page.get_by_test_id("offer")
    code, _, body = submit(page)
    assert code == 201, body
    offer_ids = [body["result"]["offer_id"]]
    # The offer replaces the filled form.
    expect(offer).to_be_visible()
    expect(page.locator("form")).to_be_hidden()
    expect(page.get_by_test_id("offer-id")).to_have_text(str(offer_ids[0]))
    expect(page.get_by_test_id("box-id")).to_have_text(body["result"]["box_id"])
    expect(offer).to_contain_text("$315")
    expect(offer).to_contain_text("iPhone 15 128 GB · Good")
    page.screenshot(path=str(artifacts / "checkout-success.png"), full_page=True)

    # Four more for the same address, spelled differently: the limit keys on
    # the trimmed, lower-cased email, at the gateway as at Reusely.
    for email in ("Shopper@Example.com", "SHOPPER@example.com", "shopper@EXAMPLE.COM"):
        another(page)
        page.get_by_label("Email").fill(email)
        code, _, body = submit(page)
        assert code == 201, body
        offer_ids.append(body["result"]["offer_id"])
        expect(page.get_by_test_id("offer-id")).to_have_text(str(offer_ids[-1]))
    another(page)
    page.get_by_label("Email").fill("  shopper@example.com ")
    code, _, body = submit(page)
    assert code == 201, body
    offer_ids.append(body["result"]["offer_id"])
    assert len(set(offer_ids)) == 5

    another(page)
    code, headers, body = submit(page)
    assert code == 429
    assert body["error"]["code"] == "rate_limited", "refused by Reusely, not the gateway"
    retry_after = int(headers["retry-after"])
    assert 1 <= retry_after <= 3600
    expect(status).to_have_attribute("data-state", "limited")
    expect(status).to_contain_text(LIMITED)
    expect(offer).to_be_hidden()
    minutes = -(-retry_after // 60)
    expect(status).to_contain_text(
        f"try again in about {minutes} minutes" if retry_after >= 90 else "try again in"
    )
    page.screenshot(path=str(artifacts / "checkout-limited.png"), full_page=True)

    # Another shopper is not affected.
    page.get_by_label("Email").fill("someone.else@example.com")
    code, _, body = submit(page)
    assert code == 201, body
    expect(offer).to_be_visible()

    records = traffic.records()
    save(records, artifacts, "checkout")
    posts = [r for r in records if r["method"] == "POST" and r["url"].endswith(MAIL_IN)]
    assert len(posts) == 7
    assert all(json.loads(r["request_body"])["email"] for r in posts)
    assert_no_credentials(records, stack)


def test_a_page_from_an_origin_not_allowed_gets_nothing(
    stack: Stack, page: Page, traffic: Traffic, artifacts: Path
) -> None:
    # What the gateway answers that origin (the browser hides it from the page).
    direct = httpx.get(
        stack.gateway + CATEGORIES, headers={"Origin": stack.foreign_page}, trust_env=False
    )
    assert direct.status_code == 403
    assert direct.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in direct.headers

    page.goto(stack.foreign_page + "/")
    status = page.get_by_test_id("status")
    expect(status).to_have_attribute("data-state", "forbidden")
    expect(status).to_contain_text("not available on this website")
    expect(page.get_by_label("Category")).to_be_disabled()
    page.screenshot(path=str(artifacts / "foreign-origin.png"), full_page=True)

    records = traffic.records()
    save(records, artifacts, "foreign-origin")
    calls = [r for r in records if r["url"].startswith(stack.gateway)]
    assert calls, "the page did not call the gateway"
    assert all(r.get("status") is None and r["failure"] for r in calls), calls
    # The network saw the gateway's 403; the browser kept it from the page.
    assert traffic.raw_statuses(f"{stack.gateway}{CATEGORIES}?page=1") == [403]
    assert_no_credentials(records, stack)


def test_reusely_down_shows_a_friendly_message(
    broken_stack: Stack, page: Page, traffic: Traffic, artifacts: Path
) -> None:
    page.goto(broken_stack.page + "/")
    status = page.get_by_test_id("status")
    expect(status).to_have_attribute("data-state", "server")
    expect(status).to_contain_text("having trouble right now (error 502)")
    records = traffic.records()
    save(records, artifacts, "reusely-down")
    calls = [r for r in records if r["url"].startswith(broken_stack.gateway)]
    assert [r.get("status") for r in calls] == [502]
    assert json.loads(calls[0]["response_body"])["error"]["code"] == "upstream_unavailable"
    assert_no_credentials(records, broken_stack)


def test_a_checkout_from_an_origin_not_allowed_is_refused_before_reusely(
    stack: Stack,
) -> None:
    # The browser's preflight for the JSON POST, and the POST itself if a
    # non-browser client sends one with that Origin.
    preflight = httpx.options(
        stack.gateway + MAIL_IN,
        headers={
            "Origin": stack.foreign_page,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        trust_env=False,
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    allowed = httpx.options(
        stack.gateway + MAIL_IN,
        headers={
            "Origin": stack.page,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        trust_env=False,
    )
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == stack.page


def test_the_button_stays_disabled_while_a_checkout_is_in_flight(
    stack: Stack, page: Page, traffic: Traffic, artifacts: Path
) -> None:
    held: list[Route] = []

    def hold(route: Route) -> None:
        if route.request.method == "POST":
            held.append(route)  # answered below, once the page has been looked at
        else:
            route.continue_()

    page.route(f"{stack.gateway}{MAIL_IN}", hold)
    page.goto(stack.page + "/")
    expect(page.locator("#reusely-trade-in")).to_have_attribute("data-ready", "true")
    choose_device(page)
    fill_details(page, "in.flight@example.com")
    button = page.locator("button.rw-submit")
    button.click()
    expect(button).to_be_disabled()
    expect(button).to_have_text("Sending…")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "loading")
    # Nothing in the form can change under the request, and no second one goes out.
    expect(page.get_by_role("radio", name=re.compile(r"^Flawless"))).to_be_disabled()
    expect(page.get_by_label("Email")).to_be_disabled()
    page.locator("form").dispatch_event("submit")
    page.screenshot(path=str(artifacts / "checkout-in-flight.png"), full_page=True)
    assert len(held) == 1
    with page.expect_response(lambda r: r.url.endswith(MAIL_IN)) as info:
        held[0].continue_()
    assert info.value.status == 201
    expect(page.get_by_test_id("offer")).to_be_visible()
    expect(page.get_by_test_id("offer-id")).to_have_text(str(info.value.json()["result"]["offer_id"]))
    posts = [r for r in traffic.requests if r.method == "POST" and r.url.endswith(MAIL_IN)]
    assert len(posts) == 1
    # Back to the form: enabled again, the shopper's details kept.
    another(page)
    expect(page.get_by_label("Email")).to_have_value("in.flight@example.com")


@pytest.mark.parametrize("retry_after", ["seconds", "http-date"])
def test_reuselys_own_429_reads_like_the_gateways(
    stack: Stack, page: Page, artifacts: Path, retry_after: str
) -> None:
    # The sandbox answers the checkout with 429 as Reusely would; the gateway passes it
    # on (or keeps it as a cooldown: 429 upstream_rate_limited). Either way the shopper
    # reads the same sentence as for the gateway's own rate_limited.
    header = "240" if retry_after == "seconds" else formatdate(time.time() + 240, usegmt=True)
    switch = {"rate_limit": {"path_prefix": MAIL_IN, "retry_after": header}}
    state = httpx.post(f"{stack.sandbox}/_sandbox/state", json=switch, trust_env=False)
    assert state.status_code == 200, state.text
    try:
        page.goto(stack.page + "/")
        expect(page.locator("#reusely-trade-in")).to_have_attribute("data-ready", "true")
        choose_device(page)
        fill_details(page, f"reusely.busy.{retry_after}@example.com")
        status = page.get_by_test_id("status")
        codes = set()
        for _ in range(2):
            code, _, body = submit(page)
            assert code == 429, body
            codes.add(body.get("error", {}).get("code", "reusely"))
            expect(status).to_have_attribute("data-state", "limited")
            expect(status).to_have_text(f"{LIMITED} Please try again in about 4 minutes.")
            expect(page.get_by_test_id("offer")).to_be_hidden()
            expect(page.get_by_role("button", name="Get my offer")).to_be_enabled()
        assert codes <= {"reusely", "upstream_rate_limited"}, codes
        page.screenshot(path=str(artifacts / f"reusely-429-{retry_after}.png"), full_page=True)
    finally:
        httpx.delete(f"{stack.sandbox}/_sandbox/state", trust_env=False).raise_for_status()


def metric(stack: Stack, series: str) -> float:
    return series_sum(httpx.get(stack.metrics, timeout=5).text, series)


def test_a_lost_answer_retried_by_the_widget_makes_one_offer_and_uses_one_checkout(
    stack: Stack, page: Page, traffic: Traffic, artifacts: Path
) -> None:
    """The phone's case: the first try reached Reusely, its answer was lost on the way.

    The widget retries the same attempt with the same Idempotency-Key, and the
    gateway answers it from the first answer: one offer, one of the five.
    """
    email = "lost.answer@example.com"
    created = 'gateway_upstream_responses_total{route="checkout-mail-in",status="201"}'
    created_before = metric(stack, created)
    replays = 'gateway_idempotent_replays_total{route="checkout-mail-in"}'
    replays_before = metric(stack, replays)
    first: dict[str, Any] = {}

    def lose_the_first_answer(route: Route) -> None:
        if route.request.method == "POST" and not first:
            answered = route.fetch()  # it reaches the gateway and Reusely...
            first.update(status=answered.status, body=answered.json(),
                         key=route.request.headers["idempotency-key"])
            route.abort("connectionreset")  # ...but the page never sees the answer
        else:
            route.continue_()

    page.route(f"{stack.gateway}{MAIL_IN}", lose_the_first_answer)
    page.goto(stack.page + "/")
    expect(page.locator("#reusely-trade-in")).to_have_attribute("data-ready", "true")
    choose_device(page)
    fill_details(page, email)
    page.get_by_role("button", name="Get my offer").click()
    expect(page.get_by_test_id("offer")).to_be_visible()
    assert first["status"] == 201
    expect(page.get_by_test_id("offer-id")).to_have_text(str(first["body"]["result"]["offer_id"]))
    posts = [r for r in traffic.requests if r.method == "POST" and r.url.endswith(MAIL_IN)]
    assert len(posts) == 2  # the lost try and its retry
    assert {r.headers["idempotency-key"] for r in posts} == {first["key"]}
    retry = posts[1].response()
    assert retry is not None and retry.headers["idempotent-replayed"] == "true"
    page.screenshot(path=str(artifacts / "checkout-replayed.png"), full_page=True)
    assert metric(stack, created) - created_before == 1  # one offer created at Reusely
    assert metric(stack, replays) - replays_before == 1
    # One checkout of the five used: four more pass for this email, the fifth after them not.
    for i in range(5):
        r = httpx.post(stack.gateway + MAIL_IN, json={
            "email": email, "first_name": "Ada", "last_name": "Lovelace",
            "payout_method": "paypal", "offer_detail": [{"product_id": 1, "condition_id": 2}]})
        assert r.status_code == (201 if i < 4 else 429), (i, r.text)


def test_a_double_click_sends_one_checkout_with_one_key(
    stack: Stack, page: Page, traffic: Traffic
) -> None:
    page.goto(stack.page + "/")
    expect(page.locator("#reusely-trade-in")).to_have_attribute("data-ready", "true")
    choose_device(page)
    fill_details(page, "double.click@example.com")
    page.get_by_role("button", name="Get my offer").dblclick()
    expect(page.get_by_test_id("offer")).to_be_visible()
    posts = [r for r in traffic.requests if r.method == "POST" and r.url.endswith(MAIL_IN)]
    assert len(posts) == 1
    key = posts[0].headers["idempotency-key"]
    assert re.fullmatch(r"[0-9a-f-]{32,36}", key)
