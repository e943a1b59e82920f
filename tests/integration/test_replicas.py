"""Replicas: three `reusely-gateway serve` processes on one Redis count one limit together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import ServedGateway, wait_for
from tests.support.http import MAIL_IN
from tests.support.metrics import series_sum
from tests.support.upstream import Upstream

POLICY = f"""
limits:
  on_error: deny
  timeout: 1
routes:
  - name: checkout-mail-in
    path: {MAIL_IN}
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    limits:
      - {{per: "body:email", rate: "5/hour"}}
      - {{per: "body:phone", rate: "5/hour"}}
      - {{per: ip, rate: "30/hour"}}
"""


@pytest.fixture
def replicas(tmp_path: Path, upstream: Upstream, redis_url: str) -> Iterator[list[ServedGateway]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(POLICY)
    started: list[ServedGateway] = []
    try:
        for _ in range(3):
            started.append(ServedGateway(config, upstream.url, workers=1,
                                         env={"GATEWAY_REDIS_URL": redis_url}).start())
        yield started
    finally:
        for served in started:
            served.stop()


def metric(http: httpx.Client, served: ServedGateway, name: str) -> float:
    return series_sum(http.get(served.metrics_url).text, name)


def test_three_replicas_on_one_redis_allow_five_checkouts_per_email_in_total(
        replicas: list[ServedGateway], upstream: Upstream):
    with httpx.Client(verify=False, timeout=10) as http:
        for served in replicas:
            assert http.get(served.url + "/readyz").json()["redis"] == "up"
        answers = []
        for i in range(9):
            served = replicas[i % 3]
            email = ["ada@example.org", " Ada@Example.org", "ADA@EXAMPLE.ORG "][i % 3]
            answers.append(http.post(served.url + MAIL_IN, json={
                "first_name": "Ada", "email": email, "device": "iphone-13"}))
        statuses = [r.status_code for r in answers]
        assert statuses == [200] * 5 + [429] * 4
        for refused in answers[5:]:
            assert refused.json()["error"]["code"] == "rate_limited"
            assert int(refused.headers["retry-after"]) >= 1
        assert len(upstream.received) == 5
        assert [r.headers["x-ratelimit-remaining"] for r in answers[:5]] == \
            ["4", "3", "2", "1", "0"]
        # Each replica refused what the others had used up (counts reach the
        # scrape within the workers' 0.1 s flush).
        refused = wait_for(lambda: (counts := [metric(http, s, "gateway_rate_limited_total")
                                               for s in replicas]) and sum(counts) == 4
                           and counts, "the refusals to be counted", timeout=5)
        assert sum(refused) == 4
        assert all(count >= 1 for count in refused)
