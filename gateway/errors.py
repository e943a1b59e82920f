"""The gateway's error tree and its one JSON renderer.

    GatewayError                    every refusal the gateway answers itself
      InvalidPath          400 invalid_path
      InvalidBody          400 invalid_body
      Unauthorized         401 unauthorized (with WWW-Authenticate: Bearer)
      Forbidden            403 forbidden
      OriginNotAllowed     403 origin_not_allowed
      RouteNotFound        404 route_not_found
      MethodNotAllowed     405 method_not_allowed (with Allow)
      PayloadTooLarge      413 payload_too_large
      RateLimited          429 rate_limited (with Retry-After)
      ClientDisconnected   499 (logged only; the caller is gone)
      InternalError        500 internal_error (the last-resort answer)
      UpstreamUnavailable  502 upstream_unavailable
      CredentialNotConfigured  503 credential_not_configured
      RateLimiterUnavailable   503 rate_limiter_unavailable
      NotReady             503 not_ready (readiness probe)
      UpstreamTimeout      504 upstream_timeout

    ConfigError                     a policy or environment that cannot be used;
                                    carries one located line per problem

Foreign exceptions (httpx, redis, limits) are translated into these at one
boundary each (`upstream`, `ratelimit`); nothing else catches them.
"""

from __future__ import annotations

import json


class GatewayError(Exception):
    status_code = 500
    code = "internal_error"
    message = "The gateway could not handle this request."

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers: dict[str, str] = headers or {}


class InvalidPath(GatewayError):
    status_code = 400
    code = "invalid_path"
    message = "The request path contains a forbidden sequence."


class InvalidBody(GatewayError):
    status_code = 400
    code = "invalid_body"
    message = "The request body must be a JSON object."


class Unauthorized(GatewayError):
    status_code = 401
    code = "unauthorized"
    message = "A valid bearer token is required for this route."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"www-authenticate": 'Bearer realm="reusely-gateway"'})


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
        super().__init__(
            f"This route allows {', '.join(allowed)}.", headers={"allow": ", ".join(allowed)}
        )


class PayloadTooLarge(GatewayError):
    status_code = 413
    code = "payload_too_large"
    message = "The request body is larger than this route accepts."


class RateLimited(GatewayError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; retry later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests; retry in {retry_after} seconds.",
            headers={"retry-after": str(retry_after)},
        )


class ClientDisconnected(GatewayError):
    """The caller went away before the exchange finished; nothing can be sent."""

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


class CredentialNotConfigured(GatewayError):
    status_code = 503
    code = "credential_not_configured"
    message = "This route is disabled: a Reusely credential it needs is not configured."


class RateLimiterUnavailable(GatewayError):
    status_code = 503
    code = "rate_limiter_unavailable"
    message = "The rate limiter cannot answer; retry later."


class NotReady(GatewayError):
    status_code = 503
    code = "not_ready"
    message = "The gateway is not ready."


class UpstreamTimeout(GatewayError):
    status_code = 504
    code = "upstream_timeout"
    message = "Reusely did not answer in time."
    kind = "timeout"


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
