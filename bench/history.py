#!/usr/bin/env python3
"""Each step of the development round side by side, measured in one run: bench/HISTORY.md.

Every step is a git revision (`git archive REV | tar -x` into a temp dir; "worktree" is
this checkout as it is, uncommitted changes included) served the way `make bench` serves
the gateway: `python -m gateway.cli serve --workers 1`, one worker pinned to core 0, with
this repo's .venv python and PYTHONPATH set to the revision's tree, so only `gateway/`
differs from row to row. nginx (the C reference) and every step's gateway then take the
catalog GET, internal GET (bearer) and mail-in POST (Redis limits, db 7) scenarios of
scenarios.py under `wrk -t1 -c32` on core 1, interleaved (nginx, step 1, step 2, ...,
then again), medians of the rounds. Per step and scenario: req/s as a fraction of
nginx's, and the worker's CPU microseconds per request (cpu_cost.py's reading). Loopback
only; every process started is stopped by PID at the end, also on failure or Ctrl-C.

Usage: python3 bench/history.py [LABEL=REV ...] [--only "round one,now"] [--rounds 3]
       [--seconds 4] [--warm 3] [--out bench/HISTORY.md]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpu_cost import cpu_seconds
from environment import missing
from history_report import COLUMNS, report
from load import Rounds, interleave
from probe import expect, http, wait_http, wait_port
from procs import Proc, Procs
from redis_host import BenchRedis
from scenarios import SCENARIOS
from settings import (
    ADMIN_PATH,
    BENCH,
    BENCH_TOKEN,
    CATALOG_JSON,
    CATALOG_PATH,
    GATEWAY_PYTHON,
    HOST,
    MAILIN_PATH,
    PORT,
    PROXY_CPU,
    ROOT,
    Timing,
    log,
    upstream_env,
)
from targets import start_nginx

WORKTREE = "worktree"  # the rev meaning this checkout as it is, not a commit
# The round's steps: main's first-parent merges, then the working tree.
DEFAULT_STEPS = ("round one=ae14299", "hostile callers=810c76c", "one request path=42404f9",
                 "idempotency=fbebea2", "hot path=7f38796", "credential files=67734ec",
                 "shared cache=b00a0a0", "review fixes=096fd49", f"now={WORKTREE}")
# Ports above make bench's (18080-18099), so both can be started on one machine.
PORT.update(upstream=18100, nginx=18101)
FIRST_STEP_PORT = 18102  # step i: 18102 + 2i, its metrics listener the next one
REDIS_DB = "7"
LOADS = [s for s in SCENARIOS if s.kind == "load" and s.name in COLUMNS]


@dataclass
class Step:
    label: str
    rev: str
    key: str  # the label as a name: logs, wrk tags, files
    port: int
    commit: str = ""
    policy: str = ""
    proc: Proc | None = None
    failed: str = ""

    def cpu(self) -> Callable[[], float]:
        assert self.proc
        pid = self.proc.worker()[0]

        def read() -> float:
            try:
                return cpu_seconds(pid)
            except OSError:  # the worker is gone: no number rather than a wrong one
                return math.nan
        return read


EXCEPTION = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Exit)\b: [^\"\n]*")


def one_line(text: str) -> str:
    """Why, in one line: the last exception named in a log (plain or JSON), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = EXCEPTION.findall(text) or lines[-1:] or ["?"]
    return found[-1][:200].replace("|", "/")


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def checkout(step: Step, tmp: Path) -> Path:
    """The tree the step's gateway imports from: an archive of its rev, or this checkout."""
    if step.rev == WORKTREE:
        step.commit = git("rev-parse", "--short", "HEAD") + (
            " + uncommitted" if git("status", "--porcelain", "--", "gateway") else "")
        return ROOT
    step.commit = git("rev-parse", "--short", f"{step.rev}^{{commit}}")
    tree = tmp / "trees" / step.key
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", step.commit],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def pick_policy(step: Step, tree: Path, env: dict[str, str], tmp: Path) -> Path:
    """This tree's bench policy if the revision accepts it, else the revision's own."""
    why = "no bench/policy.yaml"
    for policy, name in ((BENCH / "policy.yaml", "this tree's"),
                         (tree / "bench" / "policy.yaml", "its own")):
        if not policy.is_file():
            continue
        check = subprocess.run([str(GATEWAY_PYTHON), "-m", "gateway.cli", "check-config",
                                "--config", str(policy)], env=dict(os.environ, **env), cwd=tmp,
                               capture_output=True, text=True, timeout=120)
        if check.returncode == 0:
            step.policy = name
            return policy
        why = one_line(check.stderr or check.stdout)
    raise RuntimeError(f"check-config: {why}")


def start_step(procs: Procs, tmp: Path, step: Step) -> None:
    """Serve one revision's gateway and check its routes once; a failure marks the step."""
    try:
        tree = checkout(step, tmp)
        # A limit key of its own: every step then counts in windows of its own, which
        # grow only with its own requests. With one key for all, the `ip` window's list
        # grows with every step's traffic, and a later step's check in a round would
        # search a longer list than an earlier one's.
        env = dict(upstream_env(), GATEWAY_REDIS_URL=f"redis://{HOST}:6379/{REDIS_DB}",
                   GATEWAY_LOG_LEVEL="info", PYTHONPATH=str(tree),
                   GATEWAY_LIMIT_KEY_SECRET=f"bench-history-{step.key}-limit-key-0123456789",
                   PROMETHEUS_MULTIPROC_DIR=str(tmp / f"{step.key}-prom"))
        (tmp / f"{step.key}-prom").mkdir()
        policy = pick_policy(step, tree, env, tmp)
        step.proc = procs.start(step.key, [
            str(GATEWAY_PYTHON), "-m", "gateway.cli", "serve", "--config", str(policy),
            "--bind", f"{HOST}:{step.port}", "--metrics-bind", f"{HOST}:{step.port + 1}",
            "--workers", "1"], cpu=PROXY_CPU, env=env, logdir=tmp, cwd=tmp)
        wait_port(step.port, step.proc, timeout=60)
        wait_http(step.port, step.proc, "/healthz")
        step.proc.remember_children()
        step.proc.check_pinned()
        bearer = {"Authorization": f"Bearer {BENCH_TOKEN}"}
        expect("catalog", http("GET", step.port, CATALOG_PATH), 200, len(CATALOG_JSON))
        expect("admin", http("GET", step.port, ADMIN_PATH, bearer), 200)
        expect("admin without token", http("GET", step.port, ADMIN_PATH), 401)
        expect("mail-in", http("POST", step.port, MAILIN_PATH, {
            "Content-Type": "application/json"}, b'{"email":"sanity@example.com"}'), 201)
        log(f"{step.label}: {step.commit} serving on {step.port} ({step.policy} policy)")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        why = getattr(exc, "stderr", None) or str(exc).split("\n")[0]  # git's, or ours
        if step.proc is not None and step.proc.popen.poll() is not None:
            why = step.proc.logfile.read_text(errors="replace")  # the revision's own words
        step.failed = "did not start: " + one_line(
            why.decode(errors="replace") if isinstance(why, bytes) else str(why))
        log(f"{step.label}: {step.failed}")


def measure(steps: list[Step], how: Rounds, tmp: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    t = Timing()
    for scenario in LOADS:
        live = [s for s in steps if not s.failed]
        log(f"scenario {scenario.name}: nginx and {len(live)} steps")
        loads = {"nginx": (PORT["nginx"], scenario.load(t))}
        loads.update({s.key: (s.port, scenario.load(t)) for s in live})
        results[scenario.name] = interleave(loads, how, tmp, cpu={s.key: s.cpu() for s in live})
        for s in live:
            if s.proc and s.proc.popen.poll() is not None:
                s.failed = f"exited during {scenario.name}: " + one_line(
                    s.proc.logfile.read_text(errors="replace"))
    return results


def parse_args() -> tuple[argparse.Namespace, list[Step]]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("steps", nargs="*", metavar="LABEL=REV",
                    help=f"git revisions, or {WORKTREE} (default: the round's merges, now)")
    ap.add_argument("--only", help="comma-separated labels to keep, e.g. 'round one,now'")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="per round and target")
    ap.add_argument("--warm", type=float, default=Timing().warm, help="warm-up per target")
    ap.add_argument("--out", type=Path, default=BENCH / "HISTORY.md")
    args = ap.parse_args()
    pairs = [p.partition("=") for p in args.steps or DEFAULT_STEPS]
    if bad := [p[0] for p in pairs if not p[1] or not p[0] or not p[2]]:
        ap.error(f"not LABEL=REV: {', '.join(bad)}")
    only = {x.strip() for x in args.only.split(",")} if args.only else None
    if only and (unknown := only - {p[0] for p in pairs}):
        ap.error(f"--only: no step labelled {', '.join(sorted(unknown))}")
    pairs = [p for p in pairs if not only or p[0] in only]
    keys = [re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "step"
            for label, _, _ in pairs]
    if len(set(keys)) < len(keys):
        ap.error("two labels give the same name: " + ", ".join(keys))
    return args, [Step(label, rev, key, FIRST_STEP_PORT + 2 * i)
                  for i, ((label, _, rev), key) in enumerate(zip(pairs, keys, strict=True))]


def main() -> int:
    args, steps = parse_args()
    os.environ["PATH"] += ":/usr/sbin"
    problems = missing([]) + ([] if GATEWAY_PYTHON.exists() else ["run make install first"])
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    how = Rounds(args.warm, args.seconds, args.rounds)
    # wrk runs whole seconds, plus ~0.3 s to start and stop; starting a step ~6 s.
    per_target = len(LOADS) * (max(1, round(how.warm)) + 0.3
                               + how.rounds * (max(1, round(how.run)) + 0.3))
    log(f"{len(steps)} steps: about {((len(steps) + 1) * per_target + 6 * len(steps)) / 60:.1f}"
        " min")

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def on_signal(_signum: int, _frame: object) -> None:
        for sig in stops:  # once is enough: nothing may cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in stops:  # SIGINT too: a shell starting this in the background ignores it
        signal.signal(sig, on_signal)
    started = time.monotonic()
    procs, notes = Procs(), ["all traffic on 127.0.0.1; Redis limits in database 7"]
    tmp = Path(tempfile.mkdtemp(prefix="reusely-history-"))
    tmp.chmod(0o755)  # nginx workers run as nobody
    redis = BenchRedis(procs, tmp, notes, db=REDIS_DB)
    try:
        start_nginx(procs, tmp, "upstream")
        start_nginx(procs, tmp, "nginx")
        redis.prepare()
        for step in steps:
            start_step(procs, tmp, step)
        results = measure(steps, how, tmp)
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    except Exception as exc:  # noqa: BLE001 - whatever happens, stop what was started
        log(f"failed: {exc}")
        return 1
    finally:
        for sig in stops:  # a Ctrl-C now must not skip this
            signal.signal(sig, signal.SIG_IGN)
        redis.release()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        log("all started processes stopped")
    text = report(steps, results, how, notes, time.monotonic() - started)
    print("\n" + text)
    args.out.write_text(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
