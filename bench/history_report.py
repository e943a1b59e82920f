"""bench/HISTORY.md: the table bench/history.py measured, with what it ran on.

One row per step (its label, its commit, and if it could not be measured, why),
two columns per scenario: req/s as a fraction of nginx's in the same rounds, and
the gateway worker's CPU microseconds per request. Standard library only.
"""

from __future__ import annotations

import datetime
import math
import os
from typing import TYPE_CHECKING, Any

from environment import _first_line, cpu_model, packages
from load import Rounds
from settings import LOAD_CPU, PROXY_CPU
from targets import GATEWAY_PACKAGES, GATEWAY_VENV

if TYPE_CHECKING:
    from history import Step

# The scenarios (names in scenarios.py) and their column titles.
COLUMNS = {"catalog GET": "catalog", "internal GET (bearer)": "internal",
           "mail-in POST": "mail-in"}


def report(steps: list[Step], res: dict[str, dict[str, Any]], how: Rounds, notes: list[str],
           elapsed: float) -> str:
    head = [
        "# History: each step of the round, measured in one run\n",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} cores); nginx and each step's gateway (one "
        f"worker) pinned to core {PROXY_CPU}; wrk, the upstream nginx and Redis to core "
        f"{LOAD_CPU}",
        f"- load: `wrk -t1 -c32`, warm-up {how.warm:g} s per target, then {how.rounds} "
        f"interleaved round{'s' if how.rounds > 1 else ''} of {how.run:g} s (nginx, then the "
        "steps in table order); medians",
        "- CPU us/req: the gateway worker's utime + stime (/proc/PID/stat) over a round, "
        "divided by the requests wrk completed in it; median of the rounds",
        f"- every step runs on this repo's .venv ({packages(GATEWAY_VENV, GATEWAY_PACKAGES)});"
        " only `gateway/` changes from row to row",
        f"- nginx: {_first_line(['nginx', '-v']).replace('nginx version: ', '')}; wrk: "
        f"{_first_line(['wrk', '--version']).split(' Copyright')[0]}; "
        f"{_first_line(['redis-server', '--version'])}",
        *[f"- note: {n}" for n in notes],
        f"- run time: {elapsed:.0f} s\n",
        "| step | rev | " + " | ".join(f"{c} x nginx | {c} CPU us/req"
                                       for c in COLUMNS.values()) + " |",
        "|---|---|" + "---:|---:|" * len(COLUMNS)]
    rows, foot = [], []
    for s in steps:
        cells = []
        for name in COLUMNS:
            r, ref = res.get(name, {}).get(s.key), res.get(name, {}).get("nginx")
            if not r or not ref:
                cells += ["-", "-"]
                continue
            us = r.get("cpu_us_per_req", math.nan)
            cells += [f"{r['rps'] / ref['rps']:.3f}" + ("*" if r["errors"] else ""),
                      "?" if math.isnan(us) else f"{us:,.0f}"]
            if r["errors"]:
                foot.append(f"\\* {s.label}, {name}: {r['errors']} wrk errors in the rounds.")
        rev = (s.commit or s.rev) + (f": {s.failed}" if s.failed else "")
        rows.append(f"| {s.label} | {rev} | " + " | ".join(cells) + " |")
    nginx = [f"{res[n]['nginx']['rps']:,.0f} req/s" if n in res else "-" for n in COLUMNS]
    rows.append("| nginx | | " + " | ".join(f"{x} | " for x in nginx) + "|")
    policies = [f"{s.label}: its own bench/policy.yaml (it refuses this tree's)"
                for s in steps if s.policy == "its own"]
    tail = ["", *foot, "Policy: this tree's bench/policy.yaml" + (
        "; except " + "; ".join(policies) if policies else "") + ".", "",
        "x nginx: the step's req/s as a fraction of nginx's in the same rounds (higher is "
        "better); CPU us/req: what one request costs the worker (lower is better), which "
        "holds on a busy machine better than req/s. Compare each row with the one above: "
        "the change between them is that merge's. On a nested VM nginx's own req/s varies "
        "a lot between runs (bench/README.md): compare within one run, and rerun before "
        "believing a small difference.\n"]
    return "\n".join(head + rows + tail)
