"""The uvicorn, uvicorn-worker, gunicorn and httptools internals the worker relies on still exist.

An upgrade that renames one must fail here, naming it, rather than leave a head
unbounded or a reload losing requests without a word.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import socket
from importlib.metadata import version
from typing import Any

import pytest
from gunicorn.config import Config as GunicornConfig
from gunicorn.sock import TCPSocket
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import Server, ServerState
from uvicorn_worker import UvicornWorker

from gateway import serverinternals
from gateway.worker import DrainingHttpProtocol, GatewayWorker


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


def config() -> Config:
    return Config(_app, http="httptools", lifespan="off", log_config=None)


def protocol() -> HttpToolsProtocol:
    loop = asyncio.new_event_loop()
    try:
        return DrainingHttpProtocol(config=config(), server_state=ServerState(), app_state={},
                                    _loop=loop)
    finally:
        loop.close()


def instance(module: str, owner: str) -> Any:
    """An instance of `owner` as uvicorn or gunicorn would build it."""
    if owner == "HttpToolsProtocol":
        return protocol()
    if owner == "RequestResponseCycle":
        return RequestResponseCycle(
            scope={}, transport=None, flow=None, logger=None,
            access_logger=None, access_log=False, default_headers=[],
            message_event=asyncio.Event(), expect_100_continue=False, keep_alive=True,
            on_response=lambda: None)
    if owner == "Server":
        server = Server(config())
        # set by startup(), which needs a listening socket and the app
        if "self.servers" in inspect.getsource(Server.startup):
            server.servers = []
        return server
    if owner == "BaseSocket":
        return TCPSocket(("127.0.0.1", 0), GunicornConfig(), log=None)
    cls = getattr(importlib.import_module(module), owner)
    return cls(_app) if owner == "Config" else cls() if owner == "ServerState" else cls


@pytest.mark.parametrize(("module", "owner", "names"), serverinternals.REQUIRED,
                         ids=[f"{m}.{o}" for m, o, _ in serverinternals.REQUIRED])
def test_every_internal_the_worker_uses_exists(module, owner, names):
    target = instance(module, owner)
    try:
        missing = [n for n in names if not hasattr(target, n)]
    finally:
        if isinstance(target, TCPSocket):
            target.sock.close()
    assert not missing, (f"{module}.{owner} no longer has {missing}: gateway/serverinternals.py "
                         f"was checked against {serverinternals.CHECKED_AGAINST}")


def test_the_worker_overrides_what_the_base_classes_still_call():
    # UvicornWorker.run must still run `_serve`, or GatewayWorker._serve (the
    # draining server, the plain sockets) would silently never be used.
    assert "_serve" in UvicornWorker.run.__code__.co_names
    assert GatewayWorker._serve is not UvicornWorker._serve
    # uvicorn's data_received must still be what serverinternals mirrors: the
    # keep-alive timer stopped, then the parser fed, upgrade and errors handled.
    source = inspect.getsource(HttpToolsProtocol.data_received)
    for step in ("_unset_keepalive_if_required", "feed_data", "HttpParserError",
                 "HttpParserUpgrade", "send_400_response"):
        assert step in source, step


def test_gunicorn_keeps_its_plain_socket_inside_the_wrapper():
    wrapper = TCPSocket(("127.0.0.1", 0), GunicornConfig(), log=None)
    try:
        [plain] = serverinternals.plain_sockets([wrapper])
        assert type(plain) is socket.socket
        assert plain.fileno() == wrapper.fileno()
    finally:
        wrapper.sock.close()


def test_the_installed_versions_are_the_pinned_majors():
    majors = {name: version(name).split(".")[0] for name in serverinternals.CHECKED_AGAINST}
    checked = {name: v.split(".")[0] for name, v in serverinternals.CHECKED_AGAINST.items()}
    assert majors == checked
