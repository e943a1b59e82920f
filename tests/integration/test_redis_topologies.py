"""Limits through Redis Sentinel and Redis Cluster, each run for real on loopback."""

from __future__ import annotations

import httpx
import redis

from tests.support.redisserver import PrivateCluster, PrivateRedis, PrivateSentinel

POLICY = """
routes:
  - name: checkout-mail-in
    path: /api/v3/public/offer/mail-in
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    on_error: deny
    limits:
      - {per: "body:email", rate: "5/hour"}
"""


def test_a_sentinel_url_counts_in_the_master_it_names(gateway_factory, upstream, tmp_path):
    master = PrivateRedis().start()
    sentinel = PrivateSentinel(master, tmp_path).start()
    try:
        gw = gateway_factory(POLICY, env={
            "GATEWAY_REDIS_URL": f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster"})
        with httpx.Client(timeout=10) as http:
            codes = [http.post(gw.url + "/api/v3/public/offer/mail-in",
                               json={"email": "Shopper@Example.com "}).status_code
                     for _ in range(6)]
            ready = http.get(gw.url + "/readyz").json()
        assert codes == [200] * 5 + [429]
        assert len(upstream.received) == 5
        assert ready["redis"] == "up"
        client = redis.Redis(port=master.port)
        try:
            keys = client.keys("*")
        finally:
            client.close()
        assert keys and all(b"body:email" in k and b"shopper" not in k.lower() for k in keys)
    finally:
        sentinel.stop()
        master.stop()


def test_a_cluster_url_counts_across_nodes_with_the_two_phase_path(gateway_factory, upstream,
                                                                   tmp_path):
    cluster = PrivateCluster(tmp_path).start()
    try:
        gw = gateway_factory(POLICY, env={"GATEWAY_REDIS_URL": cluster.url})
        assert gw.app.limiter is not None and gw.app.limiter._script is None
        with httpx.Client(timeout=10) as http:
            codes = [http.post(gw.url + "/api/v3/public/offer/mail-in",
                               json={"email": f"{who}@example.com"}).status_code
                     for who in ["a"] * 6 + ["b"] * 2]
            ready = http.get(gw.url + "/readyz").json()
        assert codes == [200] * 5 + [429] + [200] * 2
        assert len(upstream.received) == 7
        assert ready["redis"] == "up"
        cluster.stop()  # no node answers: the route's on_error (deny) decides, not a 500
        with httpx.Client(timeout=10) as http:
            r = http.post(gw.url + "/api/v3/public/offer/mail-in", json={"email": "c@example.com"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "rate_limiter_unavailable"
    finally:
        cluster.stop()
