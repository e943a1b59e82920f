"""The gateway's error tree and its one JSON renderer.

    GatewayError                    every refusal the gateway answers itself
      InvalidPath              400 invalid_path
      InvalidBody              400 invalid_body
      InvalidIdempotencyKey    400 invalid_idempotency_key
      IdempotencyKeyRequired   400 idempotency_key_required
      Unauthorized             401 unauthorized (with WWW-Authenticate: Bearer)
      Forbidden                403 forbidden
      OriginNotAllowed         403 origin_not_allowed
      RouteNotFound            404 route_not_found
      MethodNotAllowed         405 method_not_allowed (with Allow)
      IdempotencyKeyInUse      409 idempotency_key_in_use (with Retry-After: 1)
      RequestTimeout           408 request_timeout (the body did not arrive in time)
      PayloadTooLarge          413 payload_too_large
      UnsupportedMediaType     415 unsupported_media_type
      IdempotencyKeyReused     422 idempotency_key_reused
      RateLimited              429 rate_limited (with Retry-After)
      UpstreamRateLimited      429 upstream_rate_limited (Reusely's cooldown, with Retry-After)
      RequestHeadTooLarge      431 request_header_fields_too_large
      ClientDisconnected       499 (logged only; the caller is gone)
      InternalError            500 internal_error (the last-resort answer)
      UpstreamUnavailable      502 upstream_unavailable
      UpstreamCredentialsRejected  502 upstream_credentials_rejected
      CredentialNotConfigured  503 credential_not_configured
      RateLimiterUnavailable   503 rate_limiter_unavailable
      UpstreamTimeout          504 upstream_timeout

    StoreError                      Redis could not answer (kind: unreachable,
                                    timeout, busy); never an answer by itself:
                                    each feature decides what it means
    ConfigError                     a policy or environment that cannot be used;
                                    carries one located line per problem

Foreign exceptions are translated into these at one boundary each: httpx's
in `upstream`, aiohttp's into httpx's in `transport`, redis-py's and
`limits`' in `store`. Nothing else catches them.

Headers an error adds to its answer are pre-encoded `(name, value)` byte
pairs, the form every answer's headers take on their way to the caller.
"""

from __future__ import annotations

import json

Headers = list[tuple[bytes, bytes]]


class GatewayError(Exception):
    status_code = 500
    code = "internal_error"
    message = "The gateway could not handle this request."

    def __init__(self, message: str | None = None, *, headers: Headers | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers: Headers = headers or []


class InvalidPath(GatewayError):
    status_code = 400
    code = "invalid_path"
    message = "The request path contains a forbidden sequence."


class InvalidBody(GatewayError):
    status_code = 400
    code = "invalid_body"
    message = "The request body must be a JSON object."


class InvalidIdempotencyKey(GatewayError):
    status_code = 400
    code = "invalid_idempotency_key"
    message = ("The Idempotency-Key header must be 1 to 255 visible ASCII characters, "
               "bare or as a quoted string.")


class IdempotencyKeyRequired(GatewayError):
    status_code = 400
    code = "idempotency_key_required"
    message = "This route requires an Idempotency-Key header."


class Unauthorized(GatewayError):
    status_code = 401
    code = "unauthorized"
    message = "A valid bearer token is required for this route."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers=[(b"www-authenticate",
                                            b'Bearer realm="reusely-gateway"')])


class Forbidden(GatewayError):
    status_code = 403
    code = "forbidden"
    message = "This client is not allowed on this route."


class OriginNotAllowed(GatewayError):
    status_code = 403
    code = "origin_not_allowed"
    message = "This origin is not allowed to call this route."


class RouteNotFound(GatewayError):
    status_code = 404
    code = "route_not_found"
    message = "No route matches this path."


class MethodNotAllowed(GatewayError):
    status_code = 405
    code = "method_not_allowed"
    message = "This method is not allowed on this route."

    def __init__(self, allowed: list[str]) -> None:
        listed = ", ".join(allowed)
        super().__init__(f"This route allows {listed}.", headers=[(b"allow", listed.encode())])


class IdempotencyKeyInUse(GatewayError):
    status_code = 409
    code = "idempotency_key_in_use"
    message = "A request with this Idempotency-Key is still being handled; retry in a second."

    def __init__(self) -> None:
        super().__init__(headers=[(b"retry-after", b"1")])


class RequestTimeout(GatewayError):
    status_code = 408
    code = "request_timeout"
    message = "The request body did not arrive in time."

    def __init__(self) -> None:
        super().__init__(headers=[(b"connection", b"close")])


class PayloadTooLarge(GatewayError):
    status_code = 413
    code = "payload_too_large"
    message = "The request body is larger than this route accepts."


class UnsupportedMediaType(GatewayError):
    status_code = 415
    code = "unsupported_media_type"
    message = "This route reads its body as JSON: send Content-Type: application/json."


class IdempotencyKeyReused(GatewayError):
    status_code = 422
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was already used for another request."


class RateLimited(GatewayError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; retry later."

    def __init__(self, retry_after: int, *, per: str = "", headers: Headers | None = None
                 ) -> None:
        super().__init__(f"Too many requests; retry in {retry_after} seconds.",
                         headers=[(b"retry-after", str(retry_after).encode()), *(headers or [])])
        self.retry_after = retry_after
        self.per = per  # the limit that refused: ip, body:email, ... or "upstream"


class UpstreamRateLimited(RateLimited):
    code = "upstream_rate_limited"

    def __init__(self, retry_after: int, *, headers: Headers | None = None) -> None:
        super().__init__(retry_after, per="upstream", headers=headers)
        self.message = (f"Reusely asked the gateway to slow down for requests like this one; "
                        f"retry in {retry_after} seconds.")


class RequestHeadTooLarge(GatewayError):
    status_code = 431
    code = "request_header_fields_too_large"
    message = "The request head is over 16 KiB or has more than 100 header fields."


class ClientDisconnected(GatewayError):
    """The caller went away (or stopped reading) before the exchange finished."""

    status_code = 499
    code = "client_closed_request"
    message = "The caller closed the connection."


class InternalError(GatewayError):
    pass


class UpstreamUnavailable(GatewayError):
    status_code = 502
    code = "upstream_unavailable"
    message = "Reusely could not be reached."

    def __init__(self, kind: str = "connect") -> None:
        super().__init__()
        self.kind = kind  # the metrics label: connect | protocol


class UpstreamCredentialsRejected(GatewayError):
    status_code = 502
    code = "upstream_credentials_rejected"
    message = ("Reusely refused the gateway's credentials (for example a lapsed subscription "
               "or a regenerated API key); the gateway's operator has been alerted.")


class CredentialNotConfigured(GatewayError):
    status_code = 503
    code = "credential_not_configured"
    message = "This route is disabled: a Reusely credential it needs is not configured."


class RateLimiterUnavailable(GatewayError):
    status_code = 503
    code = "rate_limiter_unavailable"
    message = "The rate limiter cannot answer; retry later."


class UpstreamTimeout(GatewayError):
    status_code = 504
    code = "upstream_timeout"
    message = "Reusely did not answer in time."
    kind = "timeout"


class StoreError(Exception):
    """Redis could not answer a call in time or at all.

    `kind` says why: `unreachable` (refused, reset, closed, no connection),
    `timeout` (connected, but no answer within the worker's own attention
    budget) or `busy` (the worker itself was too busy to hear an answer for
    several seconds). Features decide what it means: limits apply `on_error`
    to the first two and refuse on `busy`; the cache is bypassed.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class ConfigError(Exception):
    """A policy file or environment that cannot be used.

    `problems` holds one line per problem, each starting with where it is:
    `routes[2].limits[0].rate: "5/hr" is not a rate like "5/hour"`.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def render(code: str, message: str, request_id: str) -> bytes:
    """The one JSON shape of every answer the gateway makes itself."""
    return json.dumps(
        {"error": {"code": code, "message": message, "request_id": request_id}},
        separators=(",", ":"),
    ).encode()
