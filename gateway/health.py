"""`/healthz` and `/readyz` on the proxy listener: never routed, never forwarded.

`/healthz` says the process serves. `/readyz` says whether it should get
traffic: the policy is loaded and the limiter can work -- Redis answers, or
Redis is down but `on_error: allow` lets requests through (the body then says
`"redis": "down"`). Both end with a newline, so a `curl` in a terminal leaves
the prompt on its own line.
"""

from __future__ import annotations

from gateway.respond import Reply
from gateway.settings import Settings
from gateway.store import Store

PATHS = ("/healthz", "/readyz")
NO_STORE = (b"cache-control", b"no-store")


class Health:
    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings, self._store = settings, store
        self.ready = False  # set once start-up is complete

    async def answer(self, path: str, reply: Reply) -> None:
        status, text = 200, b'{"status":"ok"}\n'
        if path == "/readyz":
            status, text = await self._readiness()
        await reply.json(status, text, [NO_STORE])

    async def _readiness(self) -> tuple[int, bytes]:
        if not self.ready:
            return 503, b'{"status":"not_ready","policy":"not loaded"}\n'
        if not self._settings.redis_url:
            return 200, b'{"status":"ok","policy":"loaded","redis":"memory"}\n'
        if await self._store.ready():
            return 200, b'{"status":"ok","policy":"loaded","redis":"up"}\n'
        if self._settings.policy.limits.on_error == "allow":
            return 200, b'{"status":"ok","policy":"loaded","redis":"down"}\n'
        return 503, b'{"status":"not_ready","policy":"loaded","redis":"down"}\n'
