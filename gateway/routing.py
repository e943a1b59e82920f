"""The compiled route table and the path safety checks.

Routes match in file order on the decoded path with Starlette's path syntax;
the first route whose path and method match wins. The raw path is judged
before matching: dot segments, encoded slashes and backslashes, and NUL are
refused whether they arrive encoded, double-encoded or raw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.routing import compile_path

from gateway.config import Route
from gateway.errors import InvalidPath, MethodNotAllowed, RouteNotFound

_FORBIDDEN_RAW = (b"\\", b"\x00")
_FORBIDDEN_ENCODED = (b"%2f", b"%5c", b"%00")
_DOT_SEGMENT = re.compile(rb"(^|/)\.{1,2}(/|$)")


def check_path(raw_path: bytes) -> None:
    """Raise InvalidPath for a path that could mean something else after decoding.

    The path is decoded up to three times (a double-encoded `%252e%252e` is
    still a dot segment to a server that decodes twice); every stage is checked.
    """
    stage = raw_path
    for _ in range(3):
        if any(bad in stage for bad in _FORBIDDEN_RAW) or _DOT_SEGMENT.search(stage):
            raise InvalidPath()
        lowered = stage.lower()
        if any(bad in lowered for bad in _FORBIDDEN_ENCODED):
            raise InvalidPath()
        if b"%" not in stage:
            return
        stage = unquote_to_bytes(stage)
    if b"%" in stage and any(bad in stage.lower() for bad in _FORBIDDEN_ENCODED):
        raise InvalidPath()


@dataclass(frozen=True)
class _Compiled:
    route: Route
    regex: re.Pattern[str]
    methods: frozenset[str]


class RouteTable:
    def __init__(self, routes: tuple[Route, ...]) -> None:
        self._routes = [
            _Compiled(route, compile_path(route.path)[0], frozenset(route.methods))
            for route in routes
        ]
        self.routes = routes

    def match(self, method: str, path: str) -> Route:
        """The first route whose path and method match; 404 or 405 (with Allow) otherwise."""
        allowed: list[str] = []
        for compiled in self._routes:
            if compiled.regex.match(path) is None:
                continue
            if method in compiled.methods:
                return compiled.route
            allowed.extend(m for m in compiled.route.methods if m not in allowed)
        if allowed:
            raise MethodNotAllowed(allowed)
        raise RouteNotFound()

    def match_path(self, path: str) -> Route | None:
        """The first route whose path matches, whatever the method (for labelling)."""
        for compiled in self._routes:
            if compiled.regex.match(path) is not None:
                return compiled.route
        return None
