"""What the run measured on: tools and their versions, the CPU, each Python stack's packages.

Also what must be there before anything starts (nginx, wrk, taskset, two cores,
the venv of every Python target asked for), so that a missing piece is one
clear line instead of a half-started run. Standard library only.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path

from settings import GATEWAY_BIN, PEER_VENV, ROOT
from targets import GATEWAY_PACKAGES, GATEWAY_VENV, GATEWAYS, SERVERS


def missing(wanted: Collection[str]) -> list[str]:
    """Why the run cannot start, one line each; empty when all is there."""
    out = [f"missing {tool}: run bench/run.sh (it installs nginx and wrk)"
           for tool in ("nginx", "wrk", "taskset") if not shutil.which(tool)]
    cpus = os.cpu_count()
    if cpus and cpus < 2:
        out.append("needs two cores")
    for name in wanted:
        if name in SERVERS:
            spec = SERVERS[name]
            if not Path(spec.argv(spec.venv, 0)[0]).exists():
                out.append(f"missing {spec.venv.relative_to(ROOT)} for {name}: run bench/run.sh")
        elif name in GATEWAYS and GATEWAYS[name].python is None and not GATEWAY_BIN.exists():
            out.append(f"missing {GATEWAY_BIN.relative_to(ROOT)} for {name}: run make install")
    return out


def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def packages(venv: Path, names: Collection[str]) -> str:
    code = ("import importlib.metadata as m,sys\n"
            "for n in sys.argv[1:]:\n"
            "  try: print(n, m.version(n))\n"
            "  except Exception: print(n, '-')")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code, *names], capture_output=True,
                       text=True)
    return ", ".join(line for line in r.stdout.splitlines())


def versions(targets: Collection[str]) -> dict[str, str]:
    v = {
        "nginx": _first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "redis": _first_line(["redis-server", "--version"]),
        "python": platform.python_version(),
        "peer": packages(PEER_VENV, SERVERS["peer"].packages),
    }
    for name, spec in SERVERS.items():
        if name != "peer" and name in targets:
            v[name] = packages(spec.venv, spec.packages)
    if any(t.startswith("gateway") for t in targets):
        v["gateway"] = packages(GATEWAY_VENV, GATEWAY_PACKAGES)
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True)
        v["gateway commit"] = rev.stdout.strip() or "(no commit yet)"
    return v


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
