"""`reusely-gateway limits show|reset`: look up, or clear, what a value has used of a route.

For support: a shopper says the widget refuses them. Their email, phone or
address is stored only as an HMAC, so the tool is told the value, normalises
it and hides it exactly as the gateway does (`quota.Quotas.of_value`), and
reads or deletes those windows in the gateway's Redis. It needs the gateway's
`GATEWAY_REDIS_URL` and the same limit key (`GATEWAY_LIMIT_KEY_SECRET`, or
the key derived from `REUSELY_API_KEY`); it prints neither the key nor
anything derived from it.

Exit 0 on success; 2 with one line on stderr when Redis is not configured
(without it each worker counts in its own memory, which no other process can
read) or cannot answer, or the arguments name no such route or limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from gateway.environment import RANDOM_LIMIT_KEY, hide_password
from gateway.errors import ConfigError, StoreError
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.limiter import Counted
    from gateway.quota import Entry, Quotas
    from gateway.store import Store

# What a count can be looked up by (`quota.Quotas.of_value`): one of them, required.
BY = ("email", "phone", "ip", "client")
# A person waits at a terminal: more patient than a request (`limits.timeout`),
# still under the store's hard bound.
BUDGET = 2.0


def add_parser(verbs: Any) -> None:
    """`limits show|reset` under the main parser's verbs."""
    limits = verbs.add_parser("limits", help="show or clear what a value has used of a route")
    actions = limits.add_subparsers(dest="limits_verb", required=True, metavar="VERB")
    for name, text in (("show", "print limit, remaining and reset per matching window"),
                       ("reset", "clear the matching windows (after checking who asks)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", help="policy file (default: $GATEWAY_CONFIG)")
        action.add_argument("--route", required=True, help="the route's name")
        value = action.add_mutually_exclusive_group(required=True)
        for by in BY:
            value.add_argument(f"--{by}", metavar=by.upper())
        action.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The verb, given the gateway's settings; ConfigError for arguments naming nothing."""
    by = next(b for b in BY if getattr(args, b) is not None)
    route = next((r for r in settings.policy.routes if r.name == args.route), None)
    if route is None:
        names = ", ".join(r.name for r in settings.policy.routes)
        raise ConfigError([f"--route: no route named {args.route!r} (routes: {names})"])
    # The gateway's metrics directory may be set here (a shell in its container):
    # this process must not add files to it, so it is forgotten before
    # prometheus_client is imported (through the limiter).
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from prometheus_client import CollectorRegistry

    from gateway import __version__
    from gateway.limiter import Limiter
    from gateway.limitkeys import LimitKeys
    from gateway.metrics import Metrics
    from gateway.quota import Quotas
    from gateway.store import Store

    logging.getLogger("gateway").addHandler(logging.NullHandler())  # one line, ours
    try:  # without GATEWAY_REDIS_URL: memory, only to check the arguments
        store = Store(settings.redis_url, budget=BUDGET)
    except Exception as exc:  # noqa: BLE001 - a URL the Redis client refuses: one line
        return _fail(f"cannot use GATEWAY_REDIS_URL: {type(exc).__name__}")
    limiter = Limiter(settings, store, LimitKeys(settings.limit_key),
                      Metrics(CollectorRegistry(), version=__version__))
    quotas = Quotas(settings, limiter, store)
    counted = quotas.of_value(route, by, getattr(args, by))
    if not settings.redis_url:
        return _fail("GATEWAY_REDIS_URL is not set: without Redis each gateway worker counts "
                     "in its own memory, which no other process can read or clear")
    if by != "client" and settings.limit_key_source == RANDOM_LIMIT_KEY:
        return _fail("neither GATEWAY_LIMIT_KEY_SECRET nor REUSELY_API_KEY is set: the "
                     "gateway's limit key, and so its keys, cannot be worked out here")
    try:
        entries = asyncio.run(_act(quotas, store, counted, clear=args.limits_verb == "reset"))
    except StoreError as exc:
        return _fail(f"Redis at {hide_password(settings.redis_url)} could not answer "
                     f"({exc.kind})")
    _print(args, route.name, by, entries)
    return 0


async def _act(quotas: Quotas, store: Store, counted: list[Counted], *,
               clear: bool) -> list[Entry]:
    """The windows as they were; cleared afterwards when asked."""
    try:
        entries = await quotas.read(counted)
        if clear:
            await quotas.clear(counted)
        return entries
    finally:
        await store.aclose()


def _print(args: argparse.Namespace, route: str, by: str, entries: list[Entry]) -> None:
    reset = args.limits_verb == "reset"
    if args.json:
        rows = [{**e.as_json(), "shadow": e.shadow} for e in entries]
        print(json.dumps({"route": route, "by": by, "cleared" if reset else "limits": rows}))
        return
    for e in entries:
        where = f"route {e.route}" if e.route else f"client {args.client}'s own limit"
        said = f"{e.remaining} of {e.limit} left"
        if reset:
            said = f"cleared ({said} before)"
        elif e.reset:
            said += f", a slot frees in {e.reset} s"
        else:
            said += ", nothing counted"
        shadow = " (shadow: counted, never refuses)" if e.shadow else ""
        print(f"{where}, {e.per} {e.rate}{shadow}: {said}")


def _fail(line: str) -> int:
    print(f"limits: {line}", file=sys.stderr)
    return 2
