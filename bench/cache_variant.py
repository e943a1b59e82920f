"""The gateway with its workers' own copies of kept answers off (bench target gateway-cache-redis).

Not part of the product. A cache hit is then read from Redis every time (one
Lua call), which is what a hit costs on a worker that has not yet seen the
answer, or in a fleet whose workers each hold a different part of the catalog.
Run as targets.GATEWAYS runs experiments: PYTHONPATH=<repo>:<repo>/bench.
"""

from __future__ import annotations

from gateway.app import Gateway
from gateway.factory import create_app_from_env


def redis_hits_app() -> Gateway:
    app = create_app_from_env()
    app.cache.local_seconds = 0  # a copy is kept until now + 0: never served
    return app
