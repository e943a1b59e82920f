"""The scenario table: what is measured, on which route, through which targets, in what order.

A scenario names its wrk scripts (bench/wrk/), its route, the targets taking
part (in the order they run; those not started are left out), and how it is
measured (`kind`, a runner in run.py):

  load    wrk -t1 -c32, every target warmed then interleaved rounds: req/s, p50, p99
  stream  the same with 4 connections, the workers' RSS sampled around it
  light   one connection with 20 ms think time: latency added over "direct"
          (wrk straight to the upstream, sending the credentials itself)
  burst   BURST_SIZE concurrent GETs of one catalog target no gateway holds yet, once
          per round with a new target: how many reached the upstream (burst.py)

A scenario's policy is its gateway target's: a target in targets.GATEWAYS is
the gateway with one policy file (gateway: policy.yaml, gateway-nolimits:
policy-nolimits.yaml, gateway-cache: policy-cache.yaml). Adding a scenario:
  1. its wrk script in bench/wrk/ if requests differ (bodies, keys, a burst);
  2. its policy file and a line in targets.GATEWAYS (with ports in
     settings.PORT) if the gateway needs other routes, cache or limits;
  3. a row below;
  4. only if it measures something wrk does not (the requests that reached the
     upstream in a burst), a new kind and its runner in run.py.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from load import Load
from settings import ADMIN_PATH, BENCH_TOKEN, BURST_PATH, CATALOG_PATH, MAILIN_PATH, Timing

KINDS = ("load", "stream", "light", "burst")


@dataclass(frozen=True)
class Scenario:
    name: str  # its label in RESULTS.md (a load and a light scenario may share one)
    kind: str  # one of KINDS
    route: str  # path and query wrk requests
    targets: tuple[str, ...]
    wrk: tuple[str, ...] = ()  # scripts from bench/wrk/, ahead of report.lua
    headers: tuple[tuple[str, str], ...] = ()  # sent on every request

    def load(self, t: Timing, extra_headers: dict[str, str] | None = None) -> Load:
        conns = {"load": t.conns, "stream": t.stream_conns, "light": t.light_conns}[self.kind]
        return Load(self.route, dict(self.headers, **(extra_headers or {})), self.wrk, conns,
                    timeout_s=30 if self.kind == "stream" else 10)

    def taking_part(self, started: Collection[str]) -> list[str]:
        return [name for name in self.targets if name in started]


PROXIES = ("nginx", "peer", "gateway")
# The catalog GET is the headline: the floors take part in it (and only in it),
# so that the gateway's distance to the floor of its stack is in every run.
CATALOG_TARGETS = ("nginx", "peer", "floor-granian", "floor-aiohttp", "gateway")
# The catalog kept: a hit in the worker's memory, and a hit read from Redis. nginx
# (proxy_pass, no cache) stays the reference, so the ratio shows what a hit saves.
CACHE_TARGETS = ("gateway-cache", "gateway-cache-redis")

SCENARIOS = (
    Scenario("catalog GET", "load", CATALOG_PATH, CATALOG_TARGETS),
    Scenario("internal GET (bearer)", "load", ADMIN_PATH, PROXIES,
             headers=(("Authorization", f"Bearer {BENCH_TOKEN}"),)),
    Scenario("mail-in POST", "load", MAILIN_PATH, (*PROXIES, "gateway-nolimits"),
             wrk=("mailin.lua",)),
    Scenario("idempotent replay POST", "load", MAILIN_PATH, ("nginx", "gateway"),
             wrk=("replay.lua",)),
    Scenario("catalog GET, cache hit", "load", CATALOG_PATH, ("nginx", *CACHE_TARGETS)),
    Scenario("stream 32 MiB", "stream", "/big", PROXIES),
    Scenario("catalog GET", "light", CATALOG_PATH, ("direct", *CATALOG_TARGETS)),
    Scenario("mail-in POST", "light", MAILIN_PATH, ("direct", "gateway", "gateway-nolimits"),
             wrk=("mailin.lua",)),
    Scenario("catalog GET, cache hit", "light", CATALOG_PATH, ("direct", *CACHE_TARGETS)),
    Scenario("cold burst of catalog misses", "burst", BURST_PATH, ("gateway", *CACHE_TARGETS)),
)


def selected(started: Collection[str], *, skip_stream: bool = False) -> list[Scenario]:
    """The scenarios that have a proxy among the started targets, in table order."""
    return [s for s in SCENARIOS
            if not (skip_stream and s.kind == "stream")
            and any(name != "direct" for name in s.taking_part(started))]
