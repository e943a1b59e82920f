#!/usr/bin/env python3
"""The shared cache's numbers for docs/cache.md: a cold burst, and the latency of a hit.

  burst  50 concurrent GETs of one catalog target no gateway holds yet, each on its own
         connection, against `reusely-gateway serve --workers 4` on Redis, then against
         two such gateways (2 workers each) sharing the Redis; Reusely is played by the
         recording upstream (tests/support/upstream.py) answering after 200 ms. Prints
         how many requests reached the upstream.
  hits   one uvicorn process serving a kept catalog answer (the entry made by one
         warm-up GET): wrk -t1 -c1 for latency, wrk -t1 -c16 for req/s, with the
         worker's copies on (memory) and off (every hit read from Redis), and with
         --before DIR that checkout's per-worker memory cache; interleaved rounds.
  swr    a hot key expiring every second (Reusely answering after 200 ms) under wrk -c8,
         without and with stale_while_revalidate: what callers wait at each expiry.

Usage, from the repository with its venv and a Redis on 127.0.0.1:6379:
    .venv/bin/python bench/cache_measure.py burst [--redis-db 10] [--code DIR]
    .venv/bin/python bench/cache_measure.py hits [--before DIR] [--rounds 5] [--seconds 5]
    .venv/bin/python bench/cache_measure.py swr [--seconds 5]
--code DIR runs the gateway from another checkout's gateway/ package (how the "before"
numbers in docs/cache.md were taken: `git archive` of main into DIR). Not part of the
product or the tests; loopback only, bounded in time (about a minute each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

import tests.support.gateway  # noqa: E402
from tests.support.gateway import ServedGateway, free_port  # noqa: E402
from tests.support.upstream import Upstream  # noqa: E402

POLICY = """
routes:
  - name: catalog
    path: /b/{rest:path}
    methods: [GET]
    credentials: [api_key, tenant_id]
    access: public
    cache_ttl: 300
    stale_while_revalidate: 60
    stale_if_error: 3600
"""
REPORT = ROOT / "bench" / "wrk" / "report.lua"


async def _burst(urls: list[str]) -> list[int]:
    """All at once, each on its own connection (one client: no per-client setup between)."""
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        answers = await asyncio.gather(*(client.get(u) for u in urls))
    return [r.status_code for r in answers]


def burst(redis_url: str, code: Path) -> None:
    print(f"gateway code: {code}/gateway")
    # `serve` runs `python -m gunicorn` in the gateway's directory, which comes first on
    # sys.path: run it from `code`.
    tests.support.gateway.ROOT = code
    upstream = Upstream().start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.yaml"
        config.write_text(POLICY)
        env = {"GATEWAY_REDIS_URL": redis_url, "GATEWAY_LOG_LEVEL": "warning",
               "PYTHONPATH": str(code)}
        for shape in ((4,), (2, 2)):
            redis.Redis.from_url(redis_url).flushdb()
            gateways = [ServedGateway(config, upstream.url, workers=w, env=env).start()
                        for w in shape]
            try:
                path = f"/b/delay/200/json/burst-{len(shape)}"
                urls = [gateways[i % len(gateways)].url + path for i in range(50)]
                started = time.monotonic()
                statuses = asyncio.run(_burst(urls))
                took = time.monotonic() - started
                reached = upstream.count(path.removeprefix("/b"))
                label = " + ".join(f"{w} workers" for w in shape)
                print(f"{label}: 50 concurrent GETs -> {reached} reached the upstream; "
                      f"statuses {sorted(set(statuses))}; {took:.2f} s for all")
            finally:
                for gw in gateways:
                    gw.stop()
    upstream.stop()


SERVER = textwrap.dedent("""
    import sys, uvicorn
    sys.path[:0] = [{code!r}, {root!r}]
    from gateway.app import create_app
    from tests.support.gateway import settings_for
    settings = settings_for({policy!r}, {upstream!r}, GATEWAY_REDIS_URL={redis!r})
    app = create_app(settings)
    print("gateway code:", sys.modules["gateway"].__file__, flush=True)
    if {copies_off!r}:
        app.cache.local_seconds = 0
    uvicorn.run(app, host="127.0.0.1", port={port}, loop="uvloop", http="httptools",
                log_level="warning", lifespan="on", access_log=False)
""")


def wrk(url: str, conns: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(REPORT), url],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.split(" ", 1)[1])
    errors = sum(v for k, v in data.items() if k.startswith("err_"))
    return {"rps": data["requests"] / (data["duration_us"] / 1e6), "p50": data["p50_us"] / 1000,
            "p99": data["p99_us"] / 1000, "max": data["max_us"] / 1000, "errors": errors}


def _serve(upstream: Upstream, redis_url: str, code: Path, db: int, copies_off: bool, *,
           policy: str = POLICY, path: str = "/b/json/hit") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    program = SERVER.format(code=str(code), root=str(ROOT), policy=policy, upstream=upstream.url,
                            redis=url, copies_off=copies_off, port=port)
    server = subprocess.Popen([sys.executable, "-c", program], env={**os.environ})
    target = f"http://127.0.0.1:{port}{path}"
    deadline = time.monotonic() + 15
    plain = {"accept-encoding": ""}  # as wrk sends none: the same key
    while True:
        try:
            httpx.get(target, timeout=2, headers=plain)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.1)
    assert httpx.get(target, timeout=2, headers=plain).headers.get("x-cache-status") == "hit"
    return server, target


def hits(redis_url: str, seconds: int, code: Path, before: Path | None, rounds: int) -> None:
    """Each variant in its own uvicorn process, measured interleaved; medians of the rounds."""
    upstream = Upstream().start()
    db = int(redis_url.rsplit("/", 1)[1])
    redis.Redis.from_url(redis_url).flushdb()
    variants = [("memory (the worker's copy)", code, False), ("Redis (copies off)", code, True)]
    if before is not None:
        variants.insert(0, ("before: memory (per-worker cache)", before, False))
    servers = []
    try:
        for label, where, copies_off in variants:
            servers.append((label, *_serve(upstream, redis_url, where, db, copies_off)))
        results: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {
            label: [] for label, *_ in servers}
        for _label, _, url in servers:
            wrk(url, 16, 2)  # warm-up
        for _ in range(rounds):
            for label, _, url in servers:
                results[label].append((wrk(url, 1, seconds), wrk(url, 16, seconds)))
    finally:
        for _, server, _ in servers:
            server.terminate()
            server.wait(10)
        upstream.stop()

    def median(label: str, which: int, key: str) -> float:
        return statistics.median(r[which][key] for r in results[label])

    print(f"\n{rounds} interleaved rounds of {seconds} s each, medians; one uvicorn process "
          "(uvloop, httptools) per row, wrk -t1 on loopback")
    print("| hit served from | p50 ms (-c1) | p99 ms (-c1) | req/s (-c1) | req/s (-c16) "
          "| p99 ms (-c16) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in results:
        print(f"| {label} | {median(label, 0, 'p50'):.3f} | {median(label, 0, 'p99'):.3f} | "
              f"{median(label, 0, 'rps'):,.0f} | {median(label, 1, 'rps'):,.0f} | "
              f"{median(label, 1, 'p99'):.2f} |")


def swr(redis_url: str, seconds: int) -> None:
    """A hot key expiring every second, Reusely answering after 200 ms: what callers wait."""
    upstream = Upstream().start()
    redis.Redis.from_url(redis_url).flushdb()
    db = int(redis_url.rsplit("/", 1)[1])
    rows = []
    try:
        for label, extra in (("cache_ttl 1, no stale_while_revalidate", ""),
                             ("cache_ttl 1, stale_while_revalidate 30",
                              "    stale_while_revalidate: 30\n")):
            text = POLICY.replace("    cache_ttl: 300\n    stale_while_revalidate: 60\n",
                                  "    cache_ttl: 1\n" + extra)
            path = f"/b/delay/200/json/hot-{len(rows)}"
            server, url = _serve(upstream, redis_url, ROOT, db, False, policy=text, path=path)
            try:
                result = wrk(url, 8, seconds)
            finally:
                server.terminate()
                server.wait(10)
            rows.append((label, result, upstream.count(path.removeprefix("/b"))))
    finally:
        upstream.stop()
    print(f"\nwrk -t1 -c8 for {seconds} s on one key; Reusely answers after 200 ms")
    print("| route | req/s | p50 ms | p99 ms | max ms | requests to Reusely |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r, reached in rows:
        print(f"| {label} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p99']:.2f} | {r['max']:.1f} "
              f"| {reached} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("what", choices=["burst", "hits", "swr"])
    ap.add_argument("--redis-db", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--code", type=Path, default=ROOT, help="a checkout whose gateway/ to run")
    ap.add_argument("--before", type=Path,
                    help="hits: also a checkout without the shared cache (its memory hits)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    if args.what == "burst":
        burst(redis_url, args.code.resolve())
    elif args.what == "swr":
        swr(redis_url, args.seconds * 2)
    else:
        hits(redis_url, args.seconds, args.code.resolve(),
             args.before.resolve() if args.before else None, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
