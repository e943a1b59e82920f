"""Reusely's own answers to the gateway: its 401 and its 429, over real sockets."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.gateway import InProcessGateway, wait_for
from tests.support.http import error_of
from tests.support.metrics import sample

POLICY = """
routes:
  - name: reads
    path: /b/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
  - name: mail-in
    path: /b/{rest:path}
    methods: [POST]
    credentials: [api_key]
    access: public
    limits:
      - {per: "body:email", rate: "50/hour"}
"""


@pytest.fixture
def start(gateway_factory: Callable[..., InProcessGateway],
          redis_url: str) -> Callable[..., InProcessGateway]:
    def start(**app_kwargs: Any) -> InProcessGateway:
        return gateway_factory(POLICY, env={"GATEWAY_REDIS_URL": redis_url}, **app_kwargs)
    return start


def test_reuselys_401_is_a_502_that_names_the_gateways_credentials(http, start, upstream):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    r = http.get(gw.url + "/b/status/401")
    assert r.status_code == 502 and error_of(r) == "upstream_credentials_rejected"
    assert "credentials" in r.json()["error"]["message"]
    assert "status_code" not in r.text  # nothing of Reusely's body
    assert "test-api-key" not in r.text and "www-authenticate" not in r.headers
    assert sample(registry, "gateway_upstream_responses_total", route="reads",
                  status="401") == 1
    # Counted once the answer is sent, so a moment after the caller may have read it.
    wait_for(lambda: sample(registry, "gateway_requests_total", route="reads", method="GET",
                            status="502", client="public") == 1, "the 502 to be counted")
    assert http.get(gw.url + "/b/status/200").status_code == 200  # the connection was reused
    assert upstream.connections == 1
    assert sample(registry, "gateway_upstream_responses_total", route="reads",
                  status="200") == 1


def test_reuselys_other_answers_pass_through_and_are_counted(http, start, upstream):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    for status in (200, 403, 404, 500, 503):
        assert http.get(f"{gw.url}/b/status/{status}").status_code == status
        assert sample(registry, "gateway_upstream_responses_total", route="reads",
                      status=str(status)) == 1


def test_a_429_holds_the_whole_route_until_retry_after(http, start, upstream):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    r = http.get(gw.url + "/b/retry-after/30")
    assert r.status_code == 429 and r.json()["status_code"] == 429  # Reusely's, unchanged
    assert r.headers["retry-after"] == "30"
    r = http.get(gw.url + "/b/anything-else")
    assert r.status_code == 429 and error_of(r) == "upstream_rate_limited"
    assert 29 <= int(r.headers["retry-after"]) <= 30
    assert len(upstream.received) == 1
    assert sample(registry, "gateway_rate_limited_total", route="reads", per="upstream") == 1
    assert http.post(gw.url + "/b/ok", json={"email": "a@example.com"}).status_code == 200


def test_a_429_on_a_keyed_route_holds_only_that_email(http, start, upstream):
    gw = start()
    r = http.post(gw.url + "/b/retry-after/120", json={"email": "Ada@Example.com"})
    assert r.status_code == 429 and r.json()["status_code"] == 429
    r = http.post(gw.url + "/b/ok", json={"email": " ada@example.com\u200b"})
    assert r.status_code == 429 and error_of(r) == "upstream_rate_limited"
    assert 119 <= int(r.headers["retry-after"]) <= 120
    assert http.post(gw.url + "/b/ok", json={"email": "grace@example.com"}).status_code == 200
    assert http.post(gw.url + "/b/ok", json={}).status_code == 200  # another tuple: no email
    assert http.get(gw.url + "/b/ok").status_code == 200  # another route
    assert len(upstream.received) == 4


@pytest.mark.parametrize(("retry_after", "held"), [
    ("none", (59, 60)), ("0", None), ("7200", (3599, 3600)), ("soon", (59, 60)),
    ("HTTP-DATE+45", (43, 45)), ("HTTP-DATE-45", None),
])
def test_retry_after_in_seconds_or_as_a_date_bounded(http, start, upstream, retry_after, held):
    if retry_after.startswith("HTTP-DATE"):
        retry_after = formatdate(time.time() + int(retry_after[9:]), usegmt=True)
    gw = start()
    r = http.post(gw.url + "/b/retry-after/" + retry_after.replace(" ", "%20"),
                  json={"email": "a@example.com"})
    assert r.status_code == 429
    r = http.post(gw.url + "/b/ok", json={"email": "a@example.com"})
    if held is None:
        assert r.status_code == 200
    else:
        assert r.status_code == 429 and error_of(r) == "upstream_rate_limited"
        assert held[0] <= int(r.headers["retry-after"]) <= held[1]


def test_two_gateways_on_one_redis_share_a_cooldown(http, start, upstream):
    one, two = start(), start()
    assert http.post(one.url + "/b/retry-after/60", json={"email": "a@b.c"}).status_code == 429
    r = http.post(two.url + "/b/ok", json={"email": "a@b.c"})
    assert r.status_code == 429 and error_of(r) == "upstream_rate_limited"
    assert http.get(one.url + "/b/retry-after/60").status_code == 429
    refused = wait_for(lambda: (x := http.get(two.url + "/b/ok")).status_code == 429 and x,
                       "the other gateway to learn of the route's cooldown", timeout=5)
    assert error_of(refused) == "upstream_rate_limited"
    assert 55 <= int(refused.headers["retry-after"]) <= 60
