"""CPU per request of the gateway's one worker, per scenario: a quick probe for the hot path.

`make bench` is the measurement of record (req/s and latency as ratios of
nginx, in one run). This probe answers a narrower question fast and in a way
that holds on a busy machine: how many microseconds of CPU the gateway's
worker spends per request (its utime + stime from /proc, divided by the
requests wrk completed), which does not depend on what else the machine
runs. Use it to see what a change to the hot path costs.

    bash bench/run.sh --tools    # once: nginx and wrk
    .venv/bin/python bench/cpu_cost.py [--seconds 5] [--policy bench/policy.yaml]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from load import Load, run_wrk
from procs import Procs, descendants
from redis_host import BenchRedis
from settings import BENCH, BENCH_TOKEN, log
from targets import GatewaySpec, start_gateway, start_nginx

TICK = os.sysconf("SC_CLK_TCK")
SCENARIOS = {
    "catalog GET": Load("/api/v2/public/catalog/categories", conns=16),
    "internal GET (bearer)": Load("/api/v2/admin/orders",
                                  headers={"Authorization": f"Bearer {BENCH_TOKEN}"}, conns=16),
    "mail-in POST (Redis limits)": Load("/api/v3/public/offer/mail-in", lua=("mailin.lua",),
                                        conns=16),
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--policy", type=Path, default=BENCH / "policy.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpu-cost-") as name:
        tmp = Path(name)
        procs = Procs()
        redis = BenchRedis(procs, tmp, [])
        try:
            redis.prepare()
            start_nginx(procs, tmp, "upstream")
            gateway = start_gateway(procs, tmp, "gateway", GatewaySpec(args.policy))
            workers = [p for p in descendants(gateway.proc.pid) if p != gateway.proc.pid]
            assert len(workers) == 1, workers
            worker = workers[0]
            for scenario, load in SCENARIOS.items():
                run_wrk(gateway.port, load, 2, tmp, tag="warm")
                before = cpu_seconds(worker)
                result = run_wrk(gateway.port, load, args.seconds, tmp, tag="run")
                used = cpu_seconds(worker) - before
                per = used / max(1, result.requests) * 1e6
                log(f"{scenario}: {result.requests / result.seconds:,.0f} req/s, "
                    f"{per:,.0f} us of CPU per request, {result.errors} errors")
        finally:
            procs.stop_all()
            redis.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
