"""The report of one run: bench/RESULTS.md (for people) and bench/results.json (the numbers).

Every target is shown as a ratio of nginx measured in the same run on the same
cores, because ratios carry between machines and runs far better than req/s
on a nested VM. The gateway is also shown against its floor (a minimal proxy
on its own stack, measured in the same run): what its own logic costs.
Standard library only.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from environment import cpu_model
from settings import BENCH, LOAD_CPU, PROXY_CPU, Timing, log

Results = dict[str, Any]
FLOOR = "floor-aiohttp"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _header(res: Results, t: Timing, elapsed: float) -> list[str]:
    lines = ["# Benchmark results\n",
             f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
             f"- CPU: {cpu_model()} ({os.cpu_count()} cores); proxies pinned to core "
             f"{PROXY_CPU}, wrk and the upstream nginx to core {LOAD_CPU}",
             f"- load: `wrk -t1 -c{t.conns}` ({t.stream_conns} connections for the stream), "
             f"warm-up {t.warm:.0f} s per target, then {t.rounds} interleaved rounds of "
             f"{t.run:.0f} s; medians of the rounds",
             f"- light load: `wrk -t1 -c{t.light_conns}` with {t.think_ms} ms think time "
             f"per connection, {t.rounds} interleaved rounds of {t.light_run:.0f} s"]
    lines += [f"- {k}: {v}" for k, v in res["versions"].items()]
    lines += [f"- note: {note}" for note in res["notes"]]
    lines.append(f"- run time: {elapsed:.0f} s")
    lines.append("- on a nested VM nginx's own req/s varies 14k-34k between runs and stalls of a "
                 "few ms reach p99: compare ratios within one run; why and what to change: "
                 "bench/PROFILE.md\n")
    return lines


def _under_load(res: Results) -> list[str]:
    lines = ["## Throughput and latency under load (ratios against nginx)\n",
             "| scenario | target | req/s | x nginx | p50 ms | x nginx | p99 ms | x nginx "
             "| errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for scen, per in res["scenarios"].items():
        ref = per.get("nginx")
        for tgt, r in per.items():
            rate = r["rps"]
            rate_s = f"{rate:,.0f}"
            if scen.startswith("stream"):
                rate_s += f" ({r['mib_s']:,.0f} MiB/s)"
            lines.append(
                f"| {scen} | {tgt} | {rate_s} | "
                f"{fmt_ratio(rate / ref['rps'] if ref else None)} | {r['p50_ms']:.2f} | "
                f"{fmt_ratio(r['p50_ms'] / ref['p50_ms'] if ref else None)} | "
                f"{r['p99_ms']:.2f} | {fmt_ratio(r['p99_ms'] / ref['p99_ms'] if ref else None)} "
                f"| {r['errors']} |")
    lines.append("\nx nginx: req/s as a fraction of nginx's (higher is better); latency as a "
                 "multiple of nginx's (lower is better).\n")
    mail = res["scenarios"].get("mail-in POST", {})
    if "gateway" in mail and "gateway-nolimits" in mail:
        with_l, without = mail["gateway"], mail["gateway-nolimits"]
        lines.append(
            f"The Redis limit check (with the body read it needs), as a ratio against the "
            f"same route without limits: "
            f"{with_l['rps'] / without['rps']:.2f}x the req/s, "
            f"{with_l['p50_ms'] / without['p50_ms']:.2f}x the p50 under load; "
            f"{(1 / with_l['rps'] - 1 / without['rps']) * 1e6:,.0f} us of worker time "
            "per request.\n")
    return lines


def _floor(res: Results) -> list[str]:
    """Each catalog GET target against nginx and against the floor of the gateway's stack."""
    cat = res["scenarios"].get("catalog GET", {})
    light = res["light"].get("catalog GET", {})
    floor = cat.get(FLOOR)
    if floor is None:
        return []
    ref = cat.get("nginx")
    lines = ["## Distance to the floor (catalog GET)\n",
             "The floors are minimal proxies with no gateway logic (no routing, auth, limits, "
             "metrics or access log), measured in this run: `floor-aiohttp` on the gateway's "
             "own stack (gunicorn + one uvicorn worker + aiohttp), `floor-granian` on granian "
             "+ pyreqwest (Rust server and client). Why the gateway is on the first: "
             "bench/README.md.\n",
             f"| target | req/s | x nginx | x {FLOOR} | added p50 ms at light load |",
             "|---|---:|---:|---:|---:|"]
    for tgt, r in cat.items():
        added = (f"{light[tgt]['p50_ms'] - light['direct']['p50_ms']:+.3f}"
                 if tgt in light and "direct" in light else "-")
        lines.append(f"| {tgt} | {r['rps']:,.0f} | "
                     f"{fmt_ratio(r['rps'] / ref['rps'] if ref else None)} | "
                     f"{fmt_ratio(r['rps'] / floor['rps'])} | {added} |")
    if "gateway" in cat:
        lines.append(f"\nThe gateway's distance to the floor (gateway / {FLOOR}): "
                     f"{cat['gateway']['rps'] / floor['rps']:.3f} of its req/s"
                     + (f", {light['gateway']['p50_ms'] - light[FLOOR]['p50_ms']:+.3f} ms "
                        "median latency at light load"
                        if "gateway" in light and FLOOR in light else "") + ".")
    lines.append("")
    return lines


def _light(res: Results) -> list[str]:
    lines = ["## Added latency at light load (against going direct to the upstream)\n",
             "| scenario | target | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for scen, per in res["light"].items():
        d = per["direct"]
        for tgt, r in per.items():
            add50 = "-" if tgt == "direct" else f"{r['p50_ms'] - d['p50_ms']:+.3f}"
            add99 = "-" if tgt == "direct" else f"{r['p99_ms'] - d['p99_ms']:+.3f}"
            lines.append(f"| {scen} | {tgt} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {add50} | "
                         f"{add99} | {r['errors']} |")
    lines.append("")
    return lines


def _burst(res: Results) -> list[str]:
    bursts = res.get("burst", {})
    if not bursts:
        return []
    lines = ["## Cold burst (requests that reached the upstream)\n",
             "Concurrent GETs of one catalog target no gateway holds yet, each on its own "
             "connection, sent together; once per round, each time a new target.\n",
             "| scenario | target | sent | answered 200 | reached the upstream, each round "
             "| slowest round s |",
             "|---|---|---:|---:|---|---:|"]
    for scen, per in bursts.items():
        for tgt, runs in per.items():
            lines.append(f"| {scen} | {tgt} | {runs[0]['sent']} | "
                         f"{min(r['ok'] for r in runs)} | "
                         f"{', '.join(str(r['reached']) for r in runs)} | "
                         f"{max(r['seconds'] for r in runs):.2f} |")
    lines.append("")
    return lines


def _memory(res: Results) -> list[str]:
    if not res["rss"]:
        return []
    lines = ["## Worker memory (RSS)\n",
             "| target | at start | before stream | peak while streaming | after stream "
             "(+2 s) | growth by stream | after the run |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for tgt, r in res["rss"].items():
        def mb(k: str, r: dict[str, int] = r) -> str:
            return f"{r[k] / 1024:.1f} MiB" if k in r else "-"
        growth = (f"{(r['after_stream_kib'] - r['before_stream_kib']) / 1024:+.1f} MiB"
                  if "after_stream_kib" in r else "-")
        lines.append(f"| {tgt} | {mb('start_kib')} | {mb('before_stream_kib')} | "
                     f"{mb('peak_stream_kib')} | {mb('after_stream_kib')} | {growth} | "
                     f"{mb('end_kib')} |")
    lines.append("")
    return lines


def _ratio(res: Results, scenario: str, target: str) -> float | None:
    per = res["scenarios"].get(scenario, {})
    if target in per and "nginx" in per:
        return float(per[target]["rps"] / per["nginx"]["rps"])
    return None


def check_targets(res: Results) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    for scenario, at_least in (("catalog GET", 0.08), ("internal GET (bearer)", 0.08),
                               ("mail-in POST", 0.05)):
        r = _ratio(res, scenario, "gateway")
        if r is not None:
            out.append((f"{scenario} throughput >= {at_least:.2f} x nginx", f"{r:.3f}",
                        r >= at_least))
    light = res["light"].get("catalog GET", {})
    if "gateway" in light:
        a50 = light["gateway"]["p50_ms"] - light["direct"]["p50_ms"]
        a99 = light["gateway"]["p99_ms"] - light["direct"]["p99_ms"]
        out.append(("added latency at light load, median <= 0.8 ms", f"{a50:.3f} ms", a50 <= 0.8))
        out.append(("added latency at light load, p99 <= 3 ms", f"{a99:.3f} ms", a99 <= 3.0))
    ml = res["light"].get("mail-in POST", {})
    if "gateway" in ml and "gateway-nolimits" in ml:
        d = ml["gateway"]["p50_ms"] - ml["gateway-nolimits"]["p50_ms"]
        out.append(("Redis limit check, median added over no limits <= 0.5 ms",
                    f"{d:.3f} ms", d <= 0.5))
    for tgt, runs in res.get("burst", {}).get("cold burst of catalog misses", {}).items():
        if tgt.startswith("gateway-cache"):
            most = max(r["reached"] for r in runs)
            out.append((f"cold burst through {tgt}: one request reaches the upstream",
                        f"{most} of {runs[0]['sent']}", most == 1))
    rss = res["rss"].get("gateway")
    if rss:
        end = rss["end_kib"] / 1024
        out.append(("worker RSS after the run <= 80 MB", f"{end:.1f} MiB", end * 1.048576 <= 80))
        if "after_stream_kib" in rss:
            g = (rss["after_stream_kib"] - rss["before_stream_kib"]) / 1024
            out.append(("RSS growth from streaming 32 MiB <= 5 MB (after, settled)",
                        f"{g:+.1f} MiB", g * 1.048576 <= 5))
            p = (rss["peak_stream_kib"] - rss["before_stream_kib"]) / 1024
            out.append(("RSS growth while streaming (peak, 4 streams at once) <= 5 MB",
                        f"{p:+.1f} MiB", p * 1.048576 <= 5))
    return out


def report(res: Results, t: Timing, elapsed: float) -> str:
    lines = [*_header(res, t, elapsed), *_under_load(res), *_floor(res), *_light(res),
             *_burst(res), *_memory(res),
             "## Targets (gateway, one worker, one core)\n", "| target | measured | met |",
             "|---|---:|:---:|"]
    for label, measured, ok in check_targets(res):
        lines.append(f"| {label} | {measured} | {'yes' if ok else 'NO'} |")
    lines.append("")
    return "\n".join(lines)


def write(res: Results, text: str) -> None:
    (BENCH / "RESULTS.md").write_text(text)
    (BENCH / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    log("wrote bench/RESULTS.md and bench/results.json")
