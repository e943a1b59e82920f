"""Fixtures: a real upstream on loopback, the real gateway, a real Redis, an HTTP client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from tests.support.gateway import InProcessGateway, settings_for
from tests.support.keyed import KeyedUpstream
from tests.support.upstream import Upstream

# The suite empties (FLUSHDB) this one database before and after each test that
# uses it; TEST_REDIS_URL points it elsewhere (another host, port or db number).
REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/9"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture
def keyed() -> Iterator[KeyedUpstream]:
    """The recording upstream checking Reusely's key (tests/support/keyed.py)."""
    server = KeyedUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def gateway_factory(upstream: Upstream) -> Iterator[Callable[..., InProcessGateway]]:
    started: list[InProcessGateway] = []

    def start(policy: str, *, upstream_url: str | None = None, env: dict[str, str] | None = None,
              **app_kwargs: object) -> InProcessGateway:
        settings = settings_for(policy, upstream_url or upstream.url, **(env or {}))
        gw = InProcessGateway(settings, **app_kwargs).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real, empty Redis database. Missing Redis fails the test: it is never skipped."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"these tests need Redis at {REDIS_URL} ({exc}); `make test` starts one "
                    "on 127.0.0.1:6379, or set TEST_REDIS_URL")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def redis_gateway(gateway_factory: Callable[..., InProcessGateway],
                  redis_url: str) -> Callable[..., InProcessGateway]:
    """`gateway_factory`, limits counted in the test's Redis (unless `env` names another)."""

    def start(policy: str, *, env: dict[str, str] | None = None,
              **app_kwargs: object) -> InProcessGateway:
        return gateway_factory(policy, env={"GATEWAY_REDIS_URL": redis_url, **(env or {})},
                               **app_kwargs)

    return start


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """One client per test (plain HTTP on loopback: no TLS context to build)."""
    with httpx.Client(verify=False, timeout=10) as client:
        yield client
