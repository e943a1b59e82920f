"""The two documented offer endpoints: mail-in checkout and a lead turned into an offer.

    POST /api/v3/public/offer/mail-in
    POST /api/v3/public/offer/{buyback_type}/from-lead

Mail-in validates the required fields (names as the docs describe them:
``first_name``, ``last_name``, ``email`` or ``phone``, ``payout_method``,
``offer_detail[]`` of ``{product_id, condition_id}``) and answers 201 with an
offer id, a box id and an auth token. Reusely allows 5 per hour per email:
the sandbox counts requests per email (trimmed, lower-cased) over a moving
hour, as a throttle in front of validation would, and refuses the sixth
with 429 and ``Retry-After`` (whole seconds until a slot frees).

From-lead turns one of the sandbox's demo leads into an offer. Reusely's
page shows descriptions but not the JSON key names, so these are assumed:
``offer_id`` (the encrypted id the lead came with), ``address`` and
``payout_method`` are required; ``buyback_type`` is ``mail-in``,
``in-store``, ``1`` or ``2``. The demo leads' encrypted ids are
:data:`LEADS`' keys.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.sandbox.catalog import CONDITION_IDS, PRODUCTS
from gateway.sandbox.envelope import (
    Errors,
    envelope,
    invalid,
    is_id,
    json_object,
    not_found,
    ok,
    required_string,
)

MAIL_IN_LIMIT = 5
MAIL_IN_WINDOW = 3600.0
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
BUYBACK_TYPES = MappingProxyType({"mail-in": "mail-in", "1": "mail-in",
                                  "in-store": "in-store", "2": "in-store"})


@dataclass(frozen=True)
class Lead:
    offer_id: int
    email: str
    product_id: int
    condition_id: int


# Encrypted offer id -> the lead it stands for (what "collect leads" would hand out).
LEADS: Mapping[str, Lead] = MappingProxyType({
    "eyJpdiI6InNhbmRib3gtbGVhZC0xIn0": Lead(7001, "grace@example.com", 3, 2),
    "eyJpdiI6InNhbmRib3gtbGVhZC0yIn0": Lead(7002, "linus@example.com", 7, 1),
})


class EmailThrottle:
    """At most ``limit`` requests per normalised email in any ``window`` seconds."""

    def __init__(self, clock: Callable[[], float], limit: int, window: float) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.hits: dict[str, deque[float]] = {}

    def hit(self, email: str) -> int:
        """0 when counted; else whole seconds (at least 1) until a slot frees."""
        now = self.clock()
        key = email.strip().lower()
        hits = self.hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1, math.ceil(hits[0] + self.window - now))
        hits.append(now)
        return 0


def _validate_offer_detail(value: Any, errors: Errors) -> None:
    if not isinstance(value, list) or not value:
        errors["offer_detail"] = ["The offer_detail must be a non-empty array."]
        return
    for index, item in enumerate(value):
        where = f"offer_detail.{index}"
        if not isinstance(item, dict):
            errors[where] = [f"The {where} must be an object."]
            continue
        if not is_id(item.get("product_id")) or item["product_id"] not in PRODUCTS:
            errors[f"{where}.product_id"] = [f"The selected {where}.product_id is invalid."]
        if not is_id(item.get("condition_id")) or item["condition_id"] not in CONDITION_IDS:
            errors[f"{where}.condition_id"] = [f"The selected {where}.condition_id is invalid."]


def _validate_phone(phone: Any, errors: Errors) -> None:
    digits = re.sub(r"\D", "", phone) if isinstance(phone, str) else ""
    if phone not in (None, "") and len(digits) < 7:
        errors["phone"] = ["The phone must be a valid phone number."]


def _validate_mail_in(body: dict[str, Any]) -> Errors:
    errors: Errors = {}
    for field in ("first_name", "last_name", "payout_method"):
        required_string(body, field, errors)
    _validate_offer_detail(body.get("offer_detail"), errors)
    email, phone = body.get("email"), body.get("phone")
    if email in (None, "") and phone in (None, ""):
        errors["email"] = ["The email field is required when phone is not present."]
    if email not in (None, "") and not (isinstance(email, str) and EMAIL_RE.match(email.strip())):
        errors["email"] = ["The email must be a valid email address."]
    _validate_phone(phone, errors)
    return errors


def _validate_from_lead(body: dict[str, Any]) -> Errors:
    errors: Errors = {}
    for field in ("offer_id", "address", "payout_method"):
        required_string(body, field, errors)
    for field in ("suite", "city", "state", "zip"):
        if body.get(field) is not None and not isinstance(body[field], str):
            errors[field] = [f"The {field} must be a string."]
    country = body.get("country")
    if country is not None and not (isinstance(country, str) and COUNTRY_RE.match(country)):
        errors["country"] = ["The country must be a two-letter ISO code."]
    _validate_phone(body.get("phone"), errors)
    return errors


def _new_offer(offer_id: int) -> dict[str, Any]:
    return {"offer_id": offer_id, "box_id": f"BOX-{offer_id}",
            "auth_token": secrets.token_urlsafe(24)}


class Offers:
    """Both offer endpoints, with one app's email throttle and offer counter."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.throttle = EmailThrottle(clock, MAIL_IN_LIMIT, MAIL_IN_WINDOW)
        self.counter = iter(range(100001, 10**9))

    async def mail_in(self, request: Request) -> Response:
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        email = body.get("email")
        if isinstance(email, str) and email.strip():
            wait = self.throttle.hit(email)
            if wait:
                return envelope(429, "Too many requests for this email",
                                headers={"Retry-After": str(wait)})
        errors = _validate_mail_in(body)
        if errors:
            return invalid(errors)
        return envelope(201, "Offer created", result=_new_offer(next(self.counter)))

    async def from_lead(self, request: Request) -> Response:
        buyback_type = BUYBACK_TYPES.get(request.path_params["buyback_type"])
        if buyback_type is None:
            return not_found()
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        errors = _validate_from_lead(body)
        if errors:
            return invalid(errors)
        lead = LEADS.get(body["offer_id"])
        if lead is None:
            return not_found("Lead not found.")
        result = {**_new_offer(lead.offer_id), "buyback_type": buyback_type,
                  "status": "Pending", "payout_method": body["payout_method"]}
        return ok(result, "Offer updated")
