"""The compiled route table and the path safety checks.

Routes match in file order on the decoded path with Starlette's path syntax;
the first route whose path and method match wins.

The raw path is judged before matching, because Reusely (or anything between
it and us) may decode it again, and what it then sees must be what we judged.
So the path is percent-decoded until it stops changing, and every stage,
the raw one included, must hold: valid UTF-8 (an overlong `%c0%ae` is a dot
to some decoders), no backslash and no NUL, no encoded slash, backslash or
NUL (`%2F`, `%5C`, `%00`, any case), and no `.` or `..` segment, also once a
`;` parameter is cut off (`..;x` is `..` to Tomcat-style servers). A path
that still changes after three decodings is refused outright: nothing
legitimate is encoded four times over. Each stage costs time linear in the
path's length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.routing import compile_path

from gateway.config import Route
from gateway.errors import InvalidPath, MethodNotAllowed, RouteNotFound

_FORBIDDEN_ENCODED = (b"%2f", b"%5c", b"%00")
# A segment that is "." or "..", whole or before a ";" parameter. No nested
# repetition: one bounded attempt per "/" or start, so the search is linear.
_DOT_SEGMENT = re.compile(rb"(?:^|/)\.\.?(?:[/;]|\Z)")
# Decodings after the raw stage; a path that a further one would still change is refused.
MAX_DECODINGS = 3


def check_path(raw_path: bytes) -> None:
    """Raise InvalidPath for a path that could mean something else after decoding."""
    stage = raw_path
    for decodings in range(MAX_DECODINGS + 1):
        _check_stage(stage)
        if b"%" not in stage:
            return
        decoded = unquote_to_bytes(stage)
        if decoded == stage:
            return
        if decodings == MAX_DECODINGS:
            raise InvalidPath()
        stage = decoded


def _check_stage(stage: bytes) -> None:
    if b"\\" in stage or b"\x00" in stage or _DOT_SEGMENT.search(stage):
        raise InvalidPath()
    if not stage.isascii():
        try:
            stage.decode("utf-8")  # strict: overlong forms and surrogates are errors
        except UnicodeDecodeError:
            raise InvalidPath() from None
    if b"%" in stage:
        lowered = stage.lower()
        if any(bad in lowered for bad in _FORBIDDEN_ENCODED):
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
