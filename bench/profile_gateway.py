#!/usr/bin/env python3
"""Profile the gateway worker under catalog GET load with py-spy.

Starts the fake upstream (core 1) and the gateway (core 0) as bench/run.py
does, warms it, then records the worker with py-spy (running on core 1, so it
takes no CPU from the worker) while wrk loads it, and prints the hot spots:
self time by function, inclusive time of the request path's main steps, and
self time by package. Outputs go to bench/profile/ (git-ignored):
profile.raw.txt (collapsed stacks) and profile.svg (flame graph).

Usage: python3 bench/profile_gateway.py [--seconds 20] [--conns 32] [--path PATH]
       python3 bench/profile_gateway.py --analyze bench/profile/profile.raw.txt
py-spy comes from PyPI into bench/.venv-peer: bash bench/run.sh --tools.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Load, run_wrk  # the harness beside this file
from run import Bench
from settings import BENCH, CATALOG_PATH, HOST, LOAD_CPU, MAILIN_PATH, PEER_VENV, PORT, log
from targets import GatewaySpec

OUT = BENCH / "profile"
PYSPY = PEER_VENV / "bin" / "py-spy"

# Inclusive time of these frames (function name prefix match) is reported.
STEPS = [
    ("uvicorn: HTTP parsing and protocol (httptools_impl)", "httptools_impl.py"),
    ("Gateway._http (the whole app)", "Gateway._http "),
    ("  route match + path checks", "RouteTable.match"),
    ("  check_path", "check_path "),
    ("  access.identify", "Access.identify"),
    ("  clean_request_headers", "clean_request_headers"),
    ("  Upstream.send (httpx request + response headers)", "Upstream.send"),
    ("    httpx.Request()", "Request.__init__ (httpx/_models.py"),
    ("    httpcore pool: assign/poll idle connections",
     "AsyncConnectionPool._assign_requests_to_connections"),
    ("    httpcore is_socket_readable", "is_socket_readable"),
    ("    clean_response_headers", "clean_response_headers"),
    ("  Gateway._stream (body back to caller)", "Gateway._stream"),
    ("  metrics (prometheus_client)", "prometheus_client/"),
    ("  access log (AccessLog.record -> JSON line)", "AccessLog.record"),
    ("    JsonFormatter.format", "JsonFormatter.format"),
    ("  limiter", "Limiter.check"),
]


def frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    return stack.split(";"), int(count)


def package_of(frame: str) -> str:
    m = re.search(r"\(([^)]*?):\d+\)$", frame)
    path = m.group(1) if m else frame
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith(("gateway/", "/work/main/gateway/")) or "/gateway/" in path:
        return "gateway (ours)"
    if "lib/python3" in path or path.startswith("<frozen"):
        name = path.rsplit("/", 1)[-1]
        return f"stdlib {name.split('/')[0]}" if path.startswith("<") else (
            "stdlib " + path.split("lib/python3.11/", 1)[-1].split("/", 1)[0])
    return path or "(native/idle)"


def analyze(raw: Path, top: int = 30) -> str:
    total = 0
    self_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = frames(line)
        total += n
        leaf = stack[-1]
        self_fn[leaf] += n
        self_pkg[package_of(leaf)] += n
        joined = ";".join(stack)
        for label, needle in STEPS:
            if needle in joined:
                incl[label] += n
    out = [f"samples: {total}", "", "## Inclusive time of the request path's steps", "",
           "| step | % of samples |", "|---|---:|"]
    for label, _ in STEPS:
        out.append(f"| {label} | {100 * incl[label] / total:.1f} |")
    out += ["", "## Self time by package", "", "| package | % |", "|---|---:|"]
    for pkg, n in self_pkg.most_common(15):
        out.append(f"| {pkg} | {100 * n / total:.1f} |")
    out += ["", f"## Self time, top {top} functions", "", "| % | function |", "|---:|---|"]
    for fn, n in self_fn.most_common(top):
        short = re.sub(r"/\S*site-packages/", "", fn)
        short = re.sub(r"/work/main/", "", short)
        out.append(f"| {100 * n / total:.1f} | `{short}` |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--path", default=CATALOG_PATH)
    ap.add_argument("--mail-in", action="store_true",
                    help="profile the mail-in POST with distinct emails (Redis limiter)")
    ap.add_argument("--analyze", type=Path, help="only analyze an existing raw file")
    ap.add_argument("--variant", default="gateway", choices=["gateway", "gateway-httpcore"],
                    help="gateway-httpcore: over httpx's own transport (gateway_variant.py)")
    args = ap.parse_args()
    if args.analyze:
        print(analyze(args.analyze))
        return 0
    if not PYSPY.exists():
        print("py-spy missing: bash bench/run.sh --tools", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    name = args.variant
    ns = argparse.Namespace(quick=True, targets=name, skip_stream=True, no_write=True,
                            keep_tmp=False)
    b = Bench(ns)
    if name == "gateway-httpcore":
        b.gateways[name] = GatewaySpec(BENCH / "policy.yaml", python=PEER_VENV / "bin" / "python",
                                       app="gateway_variant:httpcore_app()")
        PORT[name], PORT[name + "-metrics"] = 18094, 18095
    suffix = "" if name == "gateway" else "-" + name.split("-", 1)[1]
    try:
        b.start()
        pid, kib = b.worker_rss(name)
        log(f"gateway worker pid {pid}, RSS {kib / 1024:.1f} MiB; warming 5 s")
        lua = ("mailin.lua",) if args.mail_in else ()
        path = MAILIN_PATH if args.mail_in else args.path
        load = Load(path, conns=args.conns, lua=lua)
        run_wrk(PORT[name], load, 5, b.tmp)
        script = b.tmp / "profile.lua"
        script.write_text("".join((BENCH / "wrk" / n).read_text() for n in lua))
        if args.mail_in:
            suffix += "-mailin"
        results = {}
        for fmt, out, secs in ((("raw", f"profile{suffix}.raw.txt", args.seconds),
                                ("flamegraph", f"profile{suffix}.svg", max(5, args.seconds // 2)))):
            wrk = subprocess.Popen(
                ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{args.conns}",
                 f"-d{secs + 4}s", "-s", str(script),
                 f"http://{HOST}:{PORT[name]}{path}", "--", f"p{time.time():.0f}"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1.5)
            subprocess.run(["taskset", "-c", LOAD_CPU, str(PYSPY), "record", "--pid",
                            str(pid), "--rate", str(args.rate), "--duration", str(secs),
                            "--nonblocking", "--format", fmt, "-o", str(OUT / out)],
                           check=True, capture_output=True)
            text, _ = wrk.communicate(timeout=secs + 60)
            m = re.search(r"Requests/sec:\s+([\d.]+)", text)
            results[fmt] = m.group(1) if m else "?"
        log(f"req/s while recording: {results}")
    finally:
        b.stop()
    report = analyze(OUT / f"profile{suffix}.raw.txt")
    (OUT / f"summary{suffix}.md").write_text(report)
    print(report)
    log(f"wrote {OUT}/profile{suffix}.raw.txt, profile{suffix}.svg, summary{suffix}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
