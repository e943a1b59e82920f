#!/usr/bin/env python3
"""Load benchmark for reusely-gateway, on loopback only: start, measure, report, stop.

One run starts the targets (targets.py: the fake upstream, nginx, the Python
peer, the two floors, the gateway with and without limits, and with the catalog
kept in memory and in Redis) on 127.0.0.1,
proxies pinned to core 0, wrk and the upstream to core 1; checks each once;
then runs the scenario table (scenarios.py) and writes bench/RESULTS.md
(report.py). Every process started here is stopped by PID at the end, also on
failure or Ctrl-C. Standard library only; the Python targets run from their
own venvs.

Usage: python3 bench/run.py [--quick] [--targets nginx,peer,gateway] [--skip-stream]
       [--no-write] [--keep-tmp]
(bench/run.sh installs nginx, wrk and the bench venvs first, then calls this.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from burst import burst
from configs import burst_log
from environment import missing, versions
from load import Rounds, WrkResult, interleave
from probe import sanity
from procs import Procs, RssSampler, tail
from redis_host import BenchRedis
from report import report, write
from scenarios import Scenario, selected
from settings import BIG_BYTES, BURST_SIZE, CREDENTIAL_HEADERS, PORT, QUICK, Timing, log
from targets import GATEWAYS, SERVERS, Target, start_gateway, start_nginx, start_server

# Python workers whose memory is reported (RSS at start, around the stream, at the end).
RSS_TARGETS = ("peer", "gateway")
DEFAULT_TARGETS = ("nginx", "peer", "floor-aiohttp", "floor-granian", "gateway",
                   "gateway-nolimits", "gateway-cache", "gateway-cache-redis")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t = QUICK if args.quick else Timing()
        self.targets_wanted = args.targets.split(",")
        self.procs = Procs()
        self.tmp = Path(tempfile.mkdtemp(prefix="reusely-bench-"))
        self.tmp.chmod(0o755)  # nginx workers run as nobody
        self.targets: dict[str, Target] = {}
        self.servers = dict(SERVERS)
        self.gateways = dict(GATEWAYS)
        self.results: dict[str, Any] = {"scenarios": {}, "light": {}, "burst": {}, "rss": {},
                                        "notes": []}
        self.started = time.monotonic()
        self.redis = BenchRedis(self.procs, self.tmp, self.results["notes"])

    # -- start everything
    def start(self) -> None:
        www = self.tmp / "www"
        www.mkdir()
        www.chmod(0o755)
        with open(www / "big.bin", "wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(BIG_BYTES >> 20):
                fh.write(block)
        (www / "big.bin").chmod(0o644)
        for name in ("upstream", "nginx"):
            if name == "upstream" or name in self.targets_wanted:
                self.targets[name] = start_nginx(self.procs, self.tmp, name)
        self.targets["direct"] = Target("direct", PORT["upstream"], None)
        for name, spec in self.servers.items():
            if name in self.targets_wanted:
                self.targets[name] = start_server(self.procs, self.tmp, name, spec)
        wanted_gateways = [n for n in self.gateways if n in self.targets_wanted]
        if wanted_gateways:
            self.redis.prepare()
        for name in wanted_gateways:
            self.targets[name] = start_gateway(self.procs, self.tmp, name, self.gateways[name])
        time.sleep(1.0)
        for target in self.targets.values():
            if target.proc:
                target.proc.remember_children()
                target.proc.check_pinned()
        sanity(t for n, t in self.targets.items() if n not in ("upstream", "direct"))

    def worker_rss(self, name: str) -> tuple[int, int]:
        proc = self.targets[name].proc
        assert proc
        return proc.worker()

    # -- measure
    def measure(self) -> None:
        rss_targets = [n for n in RSS_TARGETS if n in self.targets]
        for tgt in rss_targets:
            pid, kib = self.worker_rss(tgt)
            self.results["rss"][tgt] = {"pid": pid, "start_kib": kib}
        for scenario in selected(self.targets, skip_stream=self.args.skip_stream):
            self.run(scenario)
        for tgt in rss_targets:
            self.results["rss"][tgt]["end_kib"] = self.worker_rss(tgt)[1]

    def run(self, scenario: Scenario) -> None:
        {"load": self.run_load, "stream": self.run_stream, "light": self.run_light,
         "burst": self.run_burst}[scenario.kind](scenario)

    def run_load(self, s: Scenario) -> None:
        t = self.t
        names = s.taking_part(self.targets)
        log(f"scenario {s.name}: warm-up {t.warm:.0f}s each: {', '.join(names)}")
        load = s.load(t)
        loads = {n: (self.targets[n].port, load) for n in names}
        self.results["scenarios"][s.name] = interleave(
            loads, Rounds(t.warm, t.run, t.rounds), self.tmp)

    def run_stream(self, s: Scenario) -> None:
        """A load scenario with the Python workers' RSS before, at its peak, and after."""
        rss = self.results["rss"]
        for tgt in rss:
            rss[tgt]["before_stream_kib"] = self.worker_rss(tgt)[1]
        with RssSampler({tgt: self.worker_rss(tgt)[0] for tgt in rss}) as peaks:
            self.run_load(s)
        time.sleep(2.0)  # let the last responses finish and buffers go back
        for tgt in rss:
            rss[tgt]["peak_stream_kib"] = peaks.peak[tgt]
            rss[tgt]["after_stream_kib"] = self.worker_rss(tgt)[1]

    def run_light(self, s: Scenario) -> None:
        """Latency at light load; "direct" sends the credentials itself, the proxies must not."""
        t = self.t
        names = s.taking_part(self.targets)
        log(f"light load {s.name}: {t.light_conns} connections, {t.think_ms} ms think time: "
            + ", ".join(names))
        loads = {n: (self.targets[n].port,
                     s.load(t, CREDENTIAL_HEADERS if n == "direct" else None)) for n in names}
        how = Rounds(t.light_warm, t.light_run, t.rounds, think_ms=t.think_ms,
                     line=WrkResult.light_line, tags=("lw", "l"))
        self.results["light"][s.name] = interleave(loads, how, self.tmp)

    def run_burst(self, s: Scenario) -> None:
        """One cold burst per target and round, each on a target nobody has asked for."""
        names = s.taking_part(self.targets)
        log(f"{s.name}: {BURST_SIZE} at once, {self.t.rounds} rounds: {', '.join(names)}")
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for round_no in range(self.t.rounds):
            for name in names:
                tag = f"{name}-{round_no}-{os.getpid()}"
                runs[name].append(burst(self.targets[name].port, tag, BURST_SIZE,
                                        burst_log(self.tmp)))
                log(f"  {name}: {runs[name][-1]}")
        self.results["burst"][s.name] = runs

    # -- stop everything
    def stop(self) -> None:
        self.redis.release()
        for name, target in self.targets.items():
            if target.proc and target.proc.popen.poll() is not None and name != "direct":
                self.results["notes"].append(
                    f"{name} had exited early ({target.proc.popen.returncode}).")
        self.procs.stop_all()
        if not self.args.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs, for debugging the harness")
    ap.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                    help="comma-separated subset of " + ",".join(DEFAULT_TARGETS))
    ap.add_argument("--skip-stream", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    unknown = set(args.targets.split(",")) - set(DEFAULT_TARGETS)
    if unknown:
        ap.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    problems = missing(args.targets.split(","))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2

    b = Bench(args)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    log(f"temp dir {b.tmp}")
    rc = 0
    try:
        b.start()
        b.results["versions"] = versions(list(b.targets))
        b.measure()
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        rc = 130
    except Exception as exc:  # noqa: BLE001 - the harness must always stop what it started
        log(f"failed: {exc}")
        for target in b.targets.values():
            if target.proc:
                log(f"--- {target.name} log tail ---\n{tail(target.proc.logfile, 15)}")
        rc = 1
    finally:
        b.stop()
        log("all started processes stopped")
    if rc:
        return rc
    text = report(b.results, b.t, time.monotonic() - b.started)
    print("\n" + text)
    if not args.no_write:
        write(b.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
