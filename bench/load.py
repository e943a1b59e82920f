"""wrk runs: one invocation, its parsed result, and the interleaved rounds of several targets.

wrk runs pinned to the load core, with bench/wrk/report.lua appended to every
script so that it prints one JSON line with exact percentiles; that line is
read, not wrk's text. Targets are measured interleaved (A B C, A B C, ...) after
a warm-up each with the same load, and the median of the rounds is kept: on a
nested VM a slow moment then lands on one round of every target, not on all
rounds of one. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from settings import BENCH, HOST, LOAD_CPU, log


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / self.seconds / (1024 * 1024) if self.seconds else 0.0

    def load_line(self) -> str:
        return (f"{self.rps:9.0f} req/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms  "
                f"errors {self.errors}")

    def light_line(self) -> str:
        return (f"p50 {self.p50_ms:6.3f} ms  p90 {self.p90_ms:6.3f} ms  p99 {self.p99_ms:6.3f} ms"
                f"  ({self.requests} req, errors {self.errors})")


@dataclass
class Load:
    """One wrk invocation shape: path, headers, script pieces, concurrency."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)
    lua: tuple[str, ...] = ()
    conns: int = 32
    timeout_s: int = 10


def run_wrk(port: int, load: Load, seconds: float, tmp: Path, *, think_ms: int | None = None,
            tag: str = "r") -> WrkResult:
    pieces = [(BENCH / "wrk" / name).read_text() for name in load.lua]
    if think_ms is not None:
        pieces.append((BENCH / "wrk" / "think.lua").read_text()
                      .replace("think_ms = 5", f"think_ms = {think_ms}"))
    pieces.append((BENCH / "wrk" / "report.lua").read_text())
    script = tmp / f"wrk-{hashlib.sha1(''.join(pieces).encode()).hexdigest()[:10]}.lua"
    script.write_text("\n".join(pieces))
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{load.conns}",
            f"-d{max(1, round(seconds))}s", f"--timeout={load.timeout_s}s", "-s", str(script)]
    for k, v in load.headers.items():
        argv += ["-H", f"{k}: {v}"]
    argv += [f"http://{HOST}:{port}{load.path}", "--", tag]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    return parse_report(out.stdout, out.stderr)


def parse_report(stdout: str, stderr: str = "") -> WrkResult:
    """The result from report.lua's `BENCH_JSON {...}` line in wrk's output."""
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON "):])
            errors = sum(d[k] for k in d if k.startswith("err_"))
            return WrkResult(d["requests"], d["duration_us"] / 1e6, d["bytes"], errors,
                             d["p50_us"] / 1000, d["p90_us"] / 1000, d["p99_us"] / 1000)
    raise RuntimeError(f"wrk gave no result: {stdout}\n{stderr}")


def median_result(results: list[WrkResult]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r.rps for r in results),
        "mib_s": statistics.median(r.mib_s for r in results),
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "errors": sum(r.errors for r in results),
        "requests": sum(r.requests for r in results),
        "rounds": [round(r.rps, 1) for r in results],
    }


@dataclass
class Rounds:
    """How one interleaved measurement runs: durations, think time, log line, wrk tags."""

    warm: float
    run: float
    rounds: int
    think_ms: int | None = None
    line: Callable[[WrkResult], str] = WrkResult.load_line
    tags: tuple[str, str] = ("w", "r")  # warm-up and round tags (mailin.lua makes emails of them)


def interleave(loads: dict[str, tuple[int, Load]], how: Rounds, tmp: Path,
               cpu: Mapping[str, Callable[[], float]] | None = None) -> dict[str, dict[str, Any]]:
    """Warm each target, then run them A B C, A B C, ...; the median per target.

    loads: target name -> (port, load), in the order they run. cpu: target name ->
    a reading of its worker's CPU seconds (cpu_cost.cpu_seconds); for those, the
    median of CPU microseconds per request over the rounds is added as
    "cpu_us_per_req" (bench/history.py)."""
    for tgt, (port, load) in loads.items():
        run_wrk(port, load, how.warm, tmp, think_ms=how.think_ms,
                tag=f"{how.tags[0]}{tgt}{int(time.time())}")
    per: dict[str, list[WrkResult]] = {tgt: [] for tgt in loads}
    cpu = cpu or {}
    used: dict[str, list[float]] = {tgt: [] for tgt in cpu if tgt in loads}
    for rnd in range(how.rounds):
        for tgt, (port, load) in loads.items():
            before = cpu[tgt]() if tgt in used else 0.0
            res = run_wrk(port, load, how.run, tmp, think_ms=how.think_ms,
                          tag=f"{how.tags[1]}{rnd}{tgt}{int(time.time())}")
            per[tgt].append(res)
            line = how.line(res)
            if tgt in used:
                used[tgt].append((cpu[tgt]() - before) / max(1, res.requests) * 1e6)
                line += f"  {used[tgt][-1]:,.0f} us CPU/req"
            log(f"  round {rnd + 1} {tgt:17s} {line}")
    out = {tgt: median_result(r) for tgt, r in per.items()}
    for tgt, us in used.items():
        out[tgt]["cpu_us_per_req"] = statistics.median(us)
    return out
