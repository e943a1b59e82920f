"""The shared cache across real `reusely-gateway serve` processes and workers on one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import ServedGateway
from tests.support.upstream import Upstream

POLICY = """
routes:
  - name: catalog
    path: /b/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
    cache_ttl: 60
    stale_if_error: 600
"""


@pytest.fixture
def served(tmp_path: Path, upstream: Upstream, redis_url: str) -> Iterator[list[ServedGateway]]:
    """Two gateways on one Redis: the first with two workers."""
    config = tmp_path / "gateway.yaml"
    config.write_text(POLICY)
    started: list[ServedGateway] = []
    try:
        for workers in (2, 1):
            started.append(ServedGateway(config, upstream.url, workers=workers,
                                         env={"GATEWAY_REDIS_URL": redis_url}).start())
        yield started
    finally:
        for gateway in started:
            gateway.stop()


async def burst(url: str, count: int) -> list[httpx.Response]:
    """`count` GETs at once, each on its own connection (so the workers share them)."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=15, limits=limits) as client:
        return list(await asyncio.gather(*(client.get(url) for _ in range(count))))


def test_twenty_concurrent_misses_over_two_workers_make_one_request(served, upstream):
    two_workers, _ = served
    answers = asyncio.run(burst(two_workers.url + "/b/delay/500/json/cold", 20))
    assert [r.status_code for r in answers] == [200] * 20
    assert upstream.count("/delay/500/json/cold") == 1
    assert sorted(r.headers["x-cache-status"] for r in answers) == ["hit"] * 19 + ["miss"]
    assert len({r.content for r in answers}) == 1


def test_a_second_gateway_process_answers_from_the_first_ones_miss(served, upstream):
    first, second = served
    with httpx.Client(timeout=10) as http:
        miss = http.get(first.url + "/b/json/shared")
        hit = http.get(second.url + "/b/json/shared")
    assert miss.headers["x-cache-status"] == "miss"
    assert hit.headers["x-cache-status"] == "hit" and hit.headers["age"] in ("0", "1")
    assert hit.content == miss.content
    assert upstream.count("/json/shared") == 1
