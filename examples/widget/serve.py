"""Serve the example widget page (stdlib only): python serve.py [--port 8090].

    python examples/widget/serve.py --bind 127.0.0.1 --port 8090 \
        --gateway http://127.0.0.1:8080

Serves index.html, widget.js and widget.css from this folder and nothing
else. With --gateway, the `const GATEWAY = "...";` line of widget.js is
rewritten to that origin as it is served (the file on disk is not touched).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/widget.js": ("widget.js", "text/javascript; charset=utf-8"),
    "/widget.css": ("widget.css", "text/css; charset=utf-8"),
}
GATEWAY_LINE = re.compile(r'^const GATEWAY = "[^"\n]*";$', re.MULTILINE)


class WidgetHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args: object, gateway: str | None, quiet: bool, **kwargs: object) -> None:
        self.gateway = gateway
        self.quiet = quiet
        super().__init__(*args, directory=str(HERE), **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        entry = FILES.get(urlsplit(self.path).path)
        if entry is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        name, content_type = entry
        body = (HERE / name).read_bytes()
        if name == "widget.js" and self.gateway is not None:
            line = f"const GATEWAY = {json.dumps(self.gateway)};"
            body = GATEWAY_LINE.sub(lambda _: line, body.decode(), count=1).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"not an origin like http://127.0.0.1:8080: {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the example trade-in widget page.")
    parser.add_argument("--bind", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    parser.add_argument("--gateway", type=origin, help="gateway origin to put in widget.js")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    handler = partial(WidgetHandler, gateway=args.gateway, quiet=args.quiet)
    with ThreadingHTTPServer((args.bind, args.port), handler) as server:
        port = server.server_address[1]
        url = f"http://{args.bind}:{port}/"
        print(f"widget page on {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
