#!/usr/bin/env python3
"""Gateway variants side by side, in one run with nginx: catalog GET under load
(wrk -c32) and at light load, interleaved like bench/run.py.

  gateway          reusely-gateway serve, bench/policy.yaml (aiohttp under httpx, as shipped)
  gateway-httpcore the same code over httpx's own transport, httpcore
                   (bench/gateway_variant.py, run from bench/.venv-peer)
  floor-server     the same gunicorn worker answering a fixed body (no upstream): the
                   server's own cost, a ceiling for any Python gateway here
  floor-aiohttp    the leanest raw-ASGI + aiohttp streaming proxy (bench/floor_aiohttp.py,
                   the floor bench/run.py measures too)

Usage: python3 bench/variants.py [--quick] [--only gateway,gateway-httpcore]
Prints a markdown table; numbers for bench/PROFILE.md. Needs bash bench/run.sh --tools.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Bench  # the harness beside this file
from scenarios import Scenario
from settings import BENCH, CATALOG_PATH, PEER_VENV, PORT
from targets import GatewaySpec


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated subset of the gateway variants")
    args = ap.parse_args()
    variants = ["gateway", "gateway-httpcore", "floor-server", "floor-aiohttp"]
    if args.only:
        variants = [v for v in variants if v in args.only.split(",")]
    ns = argparse.Namespace(quick=args.quick, targets=",".join(["nginx", *variants]),
                            skip_stream=True, no_write=True, keep_tmp=False)
    b = Bench(ns)
    peer_python = PEER_VENV / "bin" / "python"
    specs = {
        "gateway-httpcore": GatewaySpec(BENCH / "policy.yaml", python=peer_python,
                                        app="gateway_variant:httpcore_app()"),
        "floor-server": GatewaySpec(BENCH / "policy.yaml", python=peer_python,
                                    app="gateway_variant:floor_app()", checks="status"),
    }
    port = 18094  # after settings.PORT (18081-18093)
    for name, spec in specs.items():
        if name in variants:
            b.gateways[name] = spec
            PORT[name], PORT[name + "-metrics"] = port, port + 1
            port += 2
    try:
        b.start()
        b.run(Scenario("catalog GET", "load", CATALOG_PATH, ("nginx", *variants)))
        b.run(Scenario("catalog GET", "light", CATALOG_PATH, ("direct", "nginx", *variants)))
        rss = {v: b.worker_rss(v)[1] for v in variants}
    finally:
        b.stop()
    res = b.results
    load_res, light = res["scenarios"]["catalog GET"], res["light"]["catalog GET"]
    ref = load_res["nginx"]["rps"]
    print("\n| variant | req/s (-c32) | x nginx | p50 ms | p99 ms | light p50 added ms "
          "| light p99 added ms | worker RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v in ["nginx", *variants]:
        r, lr = load_res[v], light[v]
        a50 = lr["p50_ms"] - light["direct"]["p50_ms"]
        a99 = lr["p99_ms"] - light["direct"]["p99_ms"]
        mem = f"{rss[v] / 1024:.0f} MiB" if v in rss else "-"
        print(f"| {v} | {r['rps']:,.0f} | {r['rps'] / ref:.3f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {a50:+.3f} | {a99:+.3f} | {mem} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
