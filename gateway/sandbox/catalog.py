"""The sandbox's fixed catalog and the catalog reads third-party code calls.

    GET /api/v2/public/catalog/categories
    GET /api/v2/public/catalog/category-brand/{category_slug}
    GET /api/v2/public/catalog/model-device/{brand_slug}/{device_slug}
    GET /api/v2/public/catalog/spec?brand=&model=
    GET /api/v2/public/catalog/condition?brand=&spec[model]=&spec[size]=

Categories ``phones`` and ``tablets``; devices ``apple/iphone``,
``samsung/galaxy`` (phones) and ``apple/ipad`` (tablets); four models with
two sizes each, giving products 1 to 8 (iphone-15 128gb, 256gb, iphone-14
128gb, 256gb, galaxy-s24 128gb, 256gb, ipad-air-5 64gb, 256gb); conditions
1 (Flawless), 2 (Good), 3 (Broken). The catalog itself never changes; the
prices do, through the admin pricing endpoint, so they live in a
:class:`Pricing` owned by one app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import Response

from gateway.sandbox.envelope import Errors, invalid, not_found, ok, paginate


@dataclass(frozen=True)
class Category:
    id: int
    slug: str
    name: str


@dataclass(frozen=True)
class Device:
    id: int
    category: str
    brand_slug: str
    brand_name: str
    slug: str
    name: str


@dataclass(frozen=True)
class Model:
    id: int
    brand: str
    device: str
    slug: str
    name: str
    sizes: tuple[tuple[str, str, int], ...]  # (slug, name, price when flawless)


@dataclass(frozen=True)
class Condition:
    id: int
    name: str
    factor: float
    terms: tuple[str, ...]


@dataclass(frozen=True)
class Product:
    id: int
    model: Model
    size_slug: str
    size_name: str
    base_price: int

    @property
    def name(self) -> str:
        return f"{self.model.name} {self.size_name}"


CATEGORIES = (Category(1, "phones", "Phones"), Category(2, "tablets", "Tablets"))
DEVICES = (
    Device(1, "phones", "apple", "Apple", "iphone", "iPhone"),
    Device(2, "phones", "samsung", "Samsung", "galaxy", "Galaxy"),
    Device(3, "tablets", "apple", "Apple", "ipad", "iPad"),
)
MODELS = (
    Model(1, "apple", "iphone", "iphone-15", "iPhone 15",
          (("128gb", "128 GB", 420), ("256gb", "256 GB", 480))),
    Model(2, "apple", "iphone", "iphone-14", "iPhone 14",
          (("128gb", "128 GB", 300), ("256gb", "256 GB", 350))),
    Model(3, "samsung", "galaxy", "galaxy-s24", "Galaxy S24",
          (("128gb", "128 GB", 360), ("256gb", "256 GB", 400))),
    Model(4, "apple", "ipad", "ipad-air-5", "iPad Air (5th gen)",
          (("64gb", "64 GB", 250), ("256gb", "256 GB", 310))),
)  # fmt: skip
CONDITIONS = (
    Condition(1, "Flawless", 1.0, ("Powers on and works fully", "No scratches or dents")),
    Condition(2, "Good", 0.75, ("Powers on and works fully", "Light signs of wear")),
    Condition(3, "Broken", 0.3, ("Cracked screen or back", "Or does not power on")),
)
PRODUCTS: Mapping[int, Product] = MappingProxyType(
    {
        index: Product(index, model, size[0], size[1], size[2])
        for index, (model, size) in enumerate(((m, s) for m in MODELS for s in m.sizes), start=1)
    }
)
CONDITION_IDS = frozenset(c.id for c in CONDITIONS)


class Pricing:
    """Condition prices per product: derived from the catalog until an admin sets one."""

    def __init__(self) -> None:
        self.custom: dict[tuple[int, int], float] = {}

    def price(self, product: Product, condition: Condition) -> float:
        derived = round(product.base_price * condition.factor)
        return self.custom.get((product.id, condition.id), derived)

    def set(self, product: Product, condition: Condition, price: float) -> None:
        self.custom[(product.id, condition.id)] = price

    def rows(self, product: Product) -> list[dict[str, object]]:
        return [
            {
                "condition_id": c.id,
                "name": c.name,
                "price": self.price(product, c),
                "is_custom_price": (product.id, c.id) in self.custom,
            }
            for c in CONDITIONS
        ]


def _find_model(request: Request, model_param: str) -> tuple[Model | None, Errors]:
    brand = request.query_params.get("brand", "")
    model = request.query_params.get(model_param, "")
    errors: Errors = {}
    for name, value in (("brand", brand), (model_param, model)):
        if not value:
            errors[name] = [f"The {name} field is required."]
    found = next((m for m in MODELS if m.brand == brand and m.slug == model), None)
    return found, errors


class Catalog:
    """The catalog reads, priced by one app's :class:`Pricing`."""

    def __init__(self, pricing: Pricing) -> None:
        self.pricing = pricing

    async def categories(self, request: Request) -> Response:
        items = [{"id": c.id, "name": c.name, "slug": c.slug} for c in CATEGORIES]
        return ok(paginate(request, items), "Categories retrieved")

    async def category_brand(self, request: Request) -> Response:
        slug = request.path_params["category_slug"]
        if not any(c.slug == slug for c in CATEGORIES):
            return not_found("Category not found.")
        items = [
            {
                "id": d.id,
                "name": d.name,
                "slug": d.slug,
                "brand": {"name": d.brand_name, "slug": d.brand_slug},
            }
            for d in DEVICES
            if d.category == slug
        ]
        return ok(paginate(request, items), "Devices retrieved")

    async def model_device(self, request: Request) -> Response:
        brand, device = request.path_params["brand_slug"], request.path_params["device_slug"]
        if not any(d.brand_slug == brand and d.slug == device for d in DEVICES):
            return not_found("Device not found.")
        items = [
            {"model_id": m.id, "name": m.name, "slug": m.slug}
            for m in MODELS
            if m.brand == brand and m.device == device
        ]
        return ok(paginate(request, items), "Models retrieved")

    async def spec(self, request: Request) -> Response:
        model, errors = _find_model(request, "model")
        if errors:
            return invalid(errors)
        if model is None:
            return not_found("Model not found.")
        choices = [{"slug": slug, "name": name} for slug, name, _ in model.sizes]
        return ok({"size": {"title": "Size", "choices": choices}}, "Specifications retrieved")

    async def condition(self, request: Request) -> Response:
        model, errors = _find_model(request, "spec[model]")
        size = request.query_params.get("spec[size]", "")
        if not size:
            errors["spec[size]"] = ["The spec[size] field is required."]
        if errors:
            return invalid(errors)
        product = next(
            (p for p in PRODUCTS.values() if p.model == model and p.size_slug == size), None
        )
        if product is None:
            return not_found("Product not found.")
        conditions = [
            {
                "id": c.id,
                "name": c.name,
                "price": self.pricing.price(product, c),
                "terms": {"title": c.name, "content": list(c.terms)},
            }
            for c in CONDITIONS
        ]
        result = {
            "product": {"product_id": product.id, "name": product.name},
            "conditions": conditions,
        }
        return ok(result, "Conditions retrieved")
