"""The catalogue of real NZa codes the generator declares (``catalogue.yml``), loaded and checked.

Each *product* is a DBC care product as a hospital declares it: specialism, typerende diagnose,
zorgproduct, zorgtype, clinical or not, a typical price around 2017, and the care activities
registered in it. Care paths name the products they need (``hip_oa_prosthesis``); background care
draws from the ``background`` entries by age and sex.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

CATALOGUE = Path(__file__).resolve().parent / "catalogue.yml"
PRICE_INDEX_YEAR = 2017
PRICE_GROWTH = 0.02  # yearly growth of DBC prices (nominal)


class Activity(BaseModel):
    """A care activity registered in a product: code, quantity (0 = set by the path, e.g. care days)
    and, for separately priced add-on drugs, the price per administration."""

    model_config = ConfigDict(frozen=True)
    code: str
    quantity: int
    addon_price_eur: float | None = None


class Product(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    key: str
    specialism: str
    diagnosis: str
    product: str
    care_type: str
    clinical: bool
    price_eur: float = Field(gt=0)
    activities: tuple[Activity, ...]
    days: int = Field(gt=0, le=365)
    age_min: int = 0
    age_max: int = 120
    sex: str = "any"
    weight: float = 0.0

    @field_validator("activities", mode="before")
    @classmethod
    def _activities(cls, value: list) -> tuple:
        out = []
        for item in value:
            if isinstance(item, (list, tuple)):
                code, qty, *rest = item
                out.append(Activity(code=str(code), quantity=int(qty), addon_price_eur=rest[0] if rest else None))
            else:
                out.append(Activity.model_validate(item))
        return tuple(out)

    @property
    def care_day_activity(self) -> Activity | None:
        for act in self.activities:
            if act.quantity == 0:
                return act
        return None


class Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True)
    products: dict[str, Product]
    background: tuple[Product, ...]

    def __getitem__(self, key: str) -> Product:
        if key in self.products:
            return self.products[key]
        for product in self.background:
            if product.key == key:
                return product
        raise KeyError(f"catalogue.yml has no product {key!r}")

    def background_weights(self, age: int, sex: int) -> np.ndarray:
        """Relative frequency of each background product for a patient of ``age`` and ``sex`` (0 = M)."""
        w = np.array(
            [
                p.weight if (p.age_min <= age <= p.age_max and p.sex in ("any", "MV"[sex])) else 0.0
                for p in self.background
            ]
        )
        return w


@lru_cache(maxsize=1)
def load_catalogue(path: Path = CATALOGUE) -> Catalogue:
    raw = yaml.safe_load(path.read_text())
    products = {key: Product.model_validate({"key": key, **spec}) for key, spec in raw["products"].items()}
    background_raw = raw["background"]
    if isinstance(background_raw, dict):
        background_raw = [{"key": k, **v} for k, v in background_raw.items()]
    background = tuple(
        Product.model_validate(
            {"key": spec.get("key", f"background_{i}"), **{k: v for k, v in spec.items() if k != "key"}}
        )
        for i, spec in enumerate(background_raw)
    )
    return Catalogue(products=products, background=background)


def price_index(year: np.ndarray | int) -> np.ndarray:
    """Nominal price level relative to ``PRICE_INDEX_YEAR``."""
    return (1.0 + PRICE_GROWTH) ** (np.asarray(year, dtype=np.float64) - PRICE_INDEX_YEAR)
