"""What tests say about HTTP answers: the gateway's error shape, and common requests."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import httpx

MAIL_IN = "/api/v3/public/offer/mail-in"
CATALOG = "/api/v2/public/catalog"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def error_of(response: httpx.Response) -> str:
    """The error code of one of the gateway's own answers, checking its whole shape."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return str(body["error"]["code"])


def offer(**fields: Any) -> dict[str, Any]:
    """A mail-in checkout body the sandbox would accept, with `fields` on top."""
    return {"first_name": "Ada", "last_name": "Lovelace", "payout_method": "paypal",
            "offer_detail": [{"product_id": 1, "condition_id": 2}], **fields}


def status_line(reply: bytes) -> int:
    """The status of a raw HTTP/1.1 reply (0 when the connection closed without one)."""
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def closed_by_peer(sock: socket.socket, wait: float = 0.0) -> bool:
    """Whether the other end has closed `sock` (end of stream, or a reset), waiting at
    most `wait` seconds for it to (0: a look without waiting)."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except (BlockingIOError, TimeoutError):  # nothing yet: still open
        return False
    except OSError:
        return True
