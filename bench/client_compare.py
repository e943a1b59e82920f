#!/usr/bin/env python3
"""Client-side cost of one proxied request, for the upstream client choice.

A standalone experiment beside the benchmark: it starts only the fake upstream
(nginx, core 1) and, for each variant, a client process pinned to core 0 that
keeps CONC requests in flight for a few seconds against the catalog path (the
~600-byte answer), reading every body as the gateway does (stream, then
close). It reports requests per second and CPU microseconds per request: the
part of the gateway's cost that the upstream client alone adds.

Variants:
  httpx-kaN        httpx.AsyncClient, max_keepalive_connections=N, client.send(stream=True)
                   (what gateway/upstream.py does; cookie jar that accepts none)
  httpx-transport  the same pool (keepalive 32) called as transport.handle_async_request,
                   skipping AsyncClient's auth/redirect/cookie/hook layers
  httpcore         httpcore.AsyncConnectionPool directly (keepalive 32), prebuilt URL
  httpx-aiohttp    httpx.AsyncClient over httpx-aiohttp's AiohttpTransport
  aiohttp          aiohttp.ClientSession directly (reference)

Usage: python3 bench/client_compare.py [--seconds 6] [--conc 32] [--after-burst]
(needs bench/.venv-peer with httpx-aiohttp and aiohttp: bash bench/run.sh --tools)
--after-burst: warm with 32 in flight (the pool grows), then measure with 2,
the light-load state after a burst (httpcore scans every pooled connection).
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ["httpx-ka10", "httpx-ka16", "httpx-ka32", "httpx-ka64", "httpx-transport",
            "httpcore", "httpx-aiohttp", "aiohttp"]
HEADERS = [
    (b"accept", b"*/*"), (b"user-agent", b"bench-widget/1.0"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"x-api-key", b"bench-api-key"), (b"x-tenant-id", b"bench-tenant"),
    (b"x-forwarded-for", b"127.0.0.1"), (b"x-forwarded-proto", b"http"),
    (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
]


async def _drain(response: Any) -> None:
    """Read a transport-level (httpx or httpcore) response to its end, then close it."""
    try:
        async for _ in response.stream:
            pass
    finally:
        await response.aclose()


async def client_main(variant: str, port: int, path: str, seconds: float, conc: int,
                      warm: float, warm_conc: int) -> dict[str, float]:
    import httpx

    base = f"http://127.0.0.1:{port}"
    timeout = {"connect": 3.0, "read": 20.0, "write": 20.0, "pool": 3.0}
    closers = []

    if variant.startswith("httpx-ka") or variant == "httpx-aiohttp":
        keep = int(variant[len("httpx-ka"):]) if variant.startswith("httpx-ka") else 32
        transport = None
        if variant == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport
            transport = AiohttpTransport(limits=httpx.Limits(max_connections=100,
                                                             max_keepalive_connections=32))
        jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(**timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=keep),
            follow_redirects=False, trust_env=False, cookies=jar, transport=transport)
        closers.append(client.aclose)

        async def one() -> None:
            request = httpx.Request("GET", base + path, headers=HEADERS,
                                    extensions={"timeout": timeout})
            response = await client.send(request, stream=True)
            try:
                async for _ in response.aiter_raw():
                    pass
            finally:
                await response.aclose()

    elif variant == "httpx-transport":
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=32))
        closers.append(transport.aclose)

        async def one() -> None:
            request = httpx.Request("GET", base + path, headers=HEADERS,
                                    extensions={"timeout": timeout})
            await _drain(await transport.handle_async_request(request))

    elif variant == "httpcore":
        import httpcore

        pool = httpcore.AsyncConnectionPool(max_connections=100, max_keepalive_connections=32)
        closers.append(pool.aclose)

        async def one() -> None:
            url = httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=port,
                               target=path.encode())
            headers = [*HEADERS, (b"host", f"127.0.0.1:{port}".encode())]
            request = httpcore.Request(b"GET", url, headers=headers,
                                       extensions={"timeout": timeout})
            await _drain(await pool.handle_async_request(request))

    elif variant == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False)
        closers.append(session.close)
        hdrs = {k.decode(): v.decode() for k, v in HEADERS}

        async def one() -> None:
            async with session.get(base + path, headers=hdrs, allow_redirects=False) as resp:
                async for _ in resp.content.iter_any():
                    pass
    else:
        raise SystemExit(f"unknown variant {variant}")

    async def loop(deadline: float) -> int:
        n = 0
        while time.perf_counter() < deadline:
            await one()
            n += 1
        return n

    end = time.perf_counter() + warm
    await asyncio.gather(*(loop(end) for _ in range(warm_conc)))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    end = t0 + seconds
    counts = await asyncio.gather(*(loop(end) for _ in range(conc)))
    elapsed = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for close in closers:
        await close()
    n = sum(counts)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"requests": n, "rps": n / elapsed, "cpu_us_per_req": 1e6 * cpu / n if n else 0.0}


def run_variant(variant: str, args: argparse.Namespace, port: int, path: str) -> dict:
    argv = ["taskset", "-c", "0", str(HERE / ".venv-peer" / "bin" / "python"), __file__,
            "--worker", variant, "--port", str(port), "--path", path,
            "--seconds", str(args.seconds), "--conc", str(args.conc)]
    if args.after_burst:
        argv.append("--after-burst")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + 120)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{variant}: {out.stdout}\n{out.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--after-burst", action="store_true")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        import uvloop

        warm_conc = 32 if args.after_burst else args.conc
        conc = 2 if args.after_burst else args.conc
        result = uvloop.run(client_main(args.worker, args.port, args.path, args.seconds, conc,
                                        2.0, warm_conc))
        print(json.dumps(result))
        return 0

    sys.path.insert(0, str(HERE))
    from run import Bench
    from settings import CATALOG_PATH, PORT, log

    ns = argparse.Namespace(quick=True, targets="", skip_stream=True, no_write=True,
                            keep_tmp=False)
    b = Bench(ns)
    rows: dict[str, list[dict]] = {}
    try:
        b.start()  # only the upstream: no proxy targets were asked for
        variants = args.variants.split(",")
        for rnd in range(args.rounds):
            for v in variants:
                r = run_variant(v, args, PORT["upstream"], CATALOG_PATH)
                rows.setdefault(v, []).append(r)
                log(f"round {rnd + 1} {v:16s} {r['rps']:8.0f} req/s "
                          f"{r['cpu_us_per_req']:7.0f} us CPU/request")
    finally:
        b.stop()
    mode = "2 in flight after a burst of 32" if args.after_burst else f"{args.conc} in flight"
    print(f"\n| variant ({mode}) | req/s | CPU us/request | x httpx-ka16 |")
    print("|---|---:|---:|---:|")
    med = {v: statistics.median(r["rps"] for r in rs) for v, rs in rows.items()}
    cpu = {v: statistics.median(r["cpu_us_per_req"] for r in rs) for v, rs in rows.items()}
    ref = med.get("httpx-ka16")
    for v in rows:
        ratio = f"{med[v] / ref:.2f}" if ref else "-"
        print(f"| {v} | {med[v]:,.0f} | {cpu[v]:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
