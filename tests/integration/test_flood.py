"""A saturated gateway still holds the per-email limit: busy is not down.

The attack this reproduces: many connections posting ~1 MiB JSON bodies for
one email. Parsing them keeps the worker's event loop late, and a Redis check
bounded by a wall-clock timer then "timed out" while Redis's reply sat in the
socket; `on_error: allow` forwarded those requests uncounted (154 for one email
through a 5/hour limit). Loopback only, bounded in connections and seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.support.gateway import ServedGateway
from tests.support.http import MAIL_IN
from tests.support.metrics import series_sum
from tests.support.upstream import Upstream

EMAIL = "flooded@example.com"
CONNECTIONS = 32
SECONDS = 8.0
POLICY = f"""
limits: {{on_error: allow}}
routes:
  - name: checkout-mail-in
    path: {MAIL_IN}
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    max_body_bytes: 1100000
    limits:
      - {{per: "body:email", rate: "5/hour"}}
"""


def request(port: int) -> bytes:
    body = json.dumps({"email": EMAIL, "first_name": "Flood", "pad": "x" * 1_000_000}).encode()
    head = (f"POST {MAIL_IN} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def flood(port: int, data: bytes) -> Counter[int]:
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + SECONDS

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(data)
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 30)
                if not line:
                    return
                statuses[int(line.split(b" ", 2)[1])] += 1
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":", 1)[1])
                await reader.readexactly(length)
        except (ConnectionError, asyncio.IncompleteReadError):
            statuses[0] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(CONNECTIONS)))
    return statuses


def test_a_flood_of_large_bodies_for_one_email_passes_no_more_than_its_rate(tmp_path: Path,
                                                                             redis_url: str):
    upstream = Upstream().start()
    policy = tmp_path / "gateway.yaml"
    policy.write_text(POLICY)
    served = ServedGateway(policy, upstream.url, workers=1,
                           env={"GATEWAY_REDIS_URL": redis_url}).start()
    try:
        statuses = asyncio.run(flood(served.port, request(served.port)))
        reached = [r for r in upstream.received if json.loads(r.body).get("email") == EMAIL]
        scraped = httpx.get(served.metrics_url, timeout=5).text
        sent = sum(statuses.values())
        print(f"flood: {sent} requests for one email, statuses {dict(statuses)}, "
              f"{len(reached)} reached the upstream, limiter errors "
              f"{series_sum(scraped, 'gateway_rate_limiter_errors_total')}")
        assert sent > 5 * CONNECTIONS  # the gateway was really flooded
        assert len(reached) <= 5
        assert statuses[200] == len(reached)
        # A busy gateway is not a Redis outage: none of the checks gave up.
        assert series_sum(scraped, "gateway_rate_limiter_errors_total") == 0
        assert httpx.get(served.url + "/healthz", timeout=5).status_code == 200
    finally:
        served.stop()
        upstream.stop()
