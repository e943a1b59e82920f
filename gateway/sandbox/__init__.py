"""A small stand-in for Reusely's API, for offline work, demos and tests.

It answers only the paths public sources show for Reusely (its docs and
third-party code), in the envelope seen in the wild (:mod:`.envelope`)::

    GET  /api/v2/public/catalog/categories                      (catalog)
    GET  /api/v2/public/catalog/category-brand/{category_slug}
    GET  /api/v2/public/catalog/model-device/{brand_slug}/{device_slug}
    GET  /api/v2/public/catalog/spec?brand=&model=
    GET  /api/v2/public/catalog/condition?brand=&spec[model]=&spec[size]=
    POST /api/v3/public/offer/mail-in                           (checkout)
    POST /api/v3/public/offer/{buyback_type}/from-lead
    GET  /api/v2/admin/orders                                   (admin: x-secret-key too)
    POST /api/v2/admin/pricing
    GET  /api/v2/admin/products/{productId}/pricing
    GET|POST|DELETE /_sandbox/state                             (the switches, see below)

Every request needs ``x-api-key`` (and ``x-tenant-id`` when one is
configured); ``/api/v2/admin/`` also needs ``x-secret-key``. Otherwise 401
``{"status_code": 401, "message": "Unauthenticated."}``. Credentials are
compared in constant time and never echoed back.

:mod:`.switches` makes it answer like Reusely on a bad day: a lapsed
subscription, a regenerated key, its own 429. All state (switches, email
counts, prices) lives inside the app :func:`create_app` builds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.sandbox.admin import Admin
from gateway.sandbox.catalog import Catalog, Pricing
from gateway.sandbox.checkout import Offers
from gateway.sandbox.envelope import envelope
from gateway.sandbox.switches import (
    STATE_PATH,
    Gate,
    SwitchBoard,
    SwitchError,
    Switches,
    parse_switches,
    switches_from_env,
)

__all__ = ["SwitchError", "Switches", "create_app", "parse_switches", "switches_from_env"]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found.", 405: "Method not allowed."}
    response = envelope(exc.status_code, messages.get(exc.status_code, exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def create_app(
    *,
    api_key: str,
    secret_key: str,
    tenant_id: str | None = None,
    switches: Switches | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """A sandbox checking these credentials, starting with these switches.

    ``clock`` drives the mail-in per-email limit.
    """
    pricing = Pricing()
    catalog, offers, admin = Catalog(pricing), Offers(clock), Admin(pricing)
    board = SwitchBoard(switches or Switches())
    base = "/api/v2/public/catalog"
    routes = [
        Route(f"{base}/categories", catalog.categories, methods=["GET"]),
        Route(f"{base}/category-brand/{{category_slug}}", catalog.category_brand,
              methods=["GET"]),
        Route(f"{base}/model-device/{{brand_slug}}/{{device_slug}}", catalog.model_device,
              methods=["GET"]),
        Route(f"{base}/spec", catalog.spec, methods=["GET"]),
        Route(f"{base}/condition", catalog.condition, methods=["GET"]),
        Route("/api/v3/public/offer/mail-in", offers.mail_in, methods=["POST"]),
        Route("/api/v3/public/offer/{buyback_type}/from-lead", offers.from_lead,
              methods=["POST"]),
        Route("/api/v2/admin/orders", admin.orders, methods=["GET"]),
        Route("/api/v2/admin/pricing", admin.set_pricing, methods=["POST"]),
        Route("/api/v2/admin/products/{product_id}/pricing", admin.product_pricing,
              methods=["GET"]),
        Route(STATE_PATH, board.endpoint, methods=["GET", "POST", "DELETE"]),
    ]
    middleware = [Middleware(Gate, board=board, api_key=api_key, secret_key=secret_key,
                             tenant_id=tenant_id)]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: _http_error})
