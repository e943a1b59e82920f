#!/usr/bin/env python3
"""Cost of one rate-limit decision against Redis, for two shapes of it.

A standalone experiment beside the benchmark. The mail-in route has two moving
window limits (body:email and ip). Per request the gateway today asks
`limits` for both windows' stats (two EVALSHA, gathered), then hits both (two
more, gathered): four round trips in two sequential phases. The alternative
is one Lua script that checks every window, adds to all of them only if all
have room, and returns each window's count and oldest entry (what the
X-RateLimit-* headers need): one round trip, atomic, no check-then-hit race.

Runs in bench/.venv-peer (bash bench/run.sh --tools), pinned to core 0, one
decision at a time (the light-load shape) and 32 at a time, against
redis://127.0.0.1:6379/15, with distinct emails. Prints wall and CPU per
decision.

Usage: python3 bench/limiter_compare.py [--n 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REDIS = "redis://127.0.0.1:6379/15"

# KEYS: one list per limit. ARGV: now, then (limit, window seconds) per key.
# Returns {allowed (1/0), count_1, oldest_1, count_2, oldest_2, ...}.
SCRIPT = """
local now = tonumber(ARGV[1])
local function in_window(key, limit, since)
  -- entries are pushed on the left, newest first: binary search the last in window
  local lo, hi, found = 0, limit - 1, -1
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local v = tonumber(redis.call('lindex', key, mid))
    if v and v >= since then found = mid; lo = mid + 1 else hi = mid - 1 end
  end
  if found < 0 then return 0, 0 end
  return found + 1, tonumber(redis.call('lindex', key, found))
end
local allowed = 1
for i = 1, #KEYS do
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local entry = redis.call('lindex', KEYS[i], limit - 1)
  if entry and tonumber(entry) >= now - window then allowed = 0 end
end
local out = {allowed}
for i = 1, #KEYS do
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if allowed == 1 then
    redis.call('lpush', KEYS[i], now)
    redis.call('ltrim', KEYS[i], 0, limit - 1)
    redis.call('expire', KEYS[i], window)
  end
  local count, oldest = in_window(KEYS[i], limit, now - window)
  out[#out + 1] = count
  out[#out + 1] = tostring(oldest)
end
return out
"""


async def worker(variant: str, n: int, conc: int) -> dict[str, float]:
    import limits
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    tag = os.urandom(4).hex()
    email_rule = limits.parse("1000000/hour")
    ip_rule = limits.parse("100000000/hour")
    storage = RedisStorage(f"async+{REDIS}", implementation="redispy", wrap_exceptions=True)
    strategy = MovingWindowRateLimiter(storage)
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    script = client.register_script(SCRIPT)
    counter = 0

    async def current() -> None:
        nonlocal counter
        counter += 1
        ids = [("bench-cmp", "body:email", f"{tag}-{counter}"), ("bench-cmp", "ip", "ip1")]
        pairs = list(zip([email_rule, ip_rule], ids, strict=True))
        await asyncio.gather(*(strategy.get_window_stats(r, *i) for r, i in pairs))
        await asyncio.gather(*(strategy.hit(r, *i) for r, i in pairs))

    async def one_script() -> None:
        nonlocal counter
        counter += 1
        keys = [f"LIMITS:cmp/body:email/{tag}-{counter}", "LIMITS:cmp/ip/ip1"]
        await script(keys=keys, args=[time.time(), 1000000, 3600, 100000000, 3600])

    decide = current if variant == "limits-4-calls" else one_script
    for _ in range(200):  # warm: connections, script caches
        await decide()

    async def loop(count: int) -> None:
        for _ in range(count):
            await decide()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(loop(n // conc) for _ in range(conc)))
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    done = (n // conc) * conc
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    await client.aclose()
    bridge = getattr(storage, "bridge", None)
    inner = getattr(bridge, "storage", None)
    if inner is not None:
        await inner.aclose()
    return {"wall_ms": 1000 * wall / done * conc, "cpu_ms": 1000 * cpu / done,
            "per_s": done / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--worker")
    ap.add_argument("--conc", type=int, default=1)
    args = ap.parse_args()
    if args.worker:
        import uvloop

        print(json.dumps(uvloop.run(worker(args.worker, args.n, args.conc))))
        return 0
    print("| variant | in flight | wall ms/decision | CPU ms/decision | decisions/s |")
    print("|---|---:|---:|---:|---:|")
    for conc in (1, 32):
        for variant in ("limits-4-calls", "one-script"):
            out = subprocess.run(
                ["taskset", "-c", "0", str(HERE / ".venv-peer" / "bin" / "python"), __file__,
                 "--worker", variant, "--n", str(args.n), "--conc", str(conc)],
                capture_output=True, text=True, timeout=600)
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            if not line:
                print(out.stdout, out.stderr, file=sys.stderr)
                return 1
            r = json.loads(line[0])
            print(f"| {variant} | {conc} | {r['wall_ms']:.3f} | {r['cpu_ms']:.3f} | "
                  f"{r['per_s']:,.0f} |", flush=True)
    for pattern in ("LIMITS:cmp/*", "LIMITS:*bench-cmp*"):  # this script's keys only
        keys = subprocess.run(["redis-cli", "-n", "15", "--scan", "--pattern", pattern],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-n", "15", "unlink", *keys[i:i + 500]],
                           capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
