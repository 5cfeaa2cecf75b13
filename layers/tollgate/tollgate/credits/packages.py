"""Credit packages that can be bought, read from ``data/packages.toml`` and validated.

A package has a price in integer cents and credits in integer units (1/10,000 credit), plus
optional bonus credits that arrive as their own lot. Operators change the data file, not code.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollgate.credits.amounts import MICRO_USD_PER_CENT

PackageName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


class CreditPackage(BaseModel):
    """One purchasable package."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: PackageName
    title: str = Field(min_length=1, max_length=100)
    price_cents: int = Field(gt=0, le=100_000_000)
    credits: int = Field(gt=0, description="Credits bought, in units of 1/10,000 credit")
    bonus_credits: int = Field(0, ge=0, description="Extra credits, in units of 1/10,000 credit")
    currency: str = Field("usd", pattern=r"^usd$")

    @property
    def price_micro_usd(self) -> int:
        return self.price_cents * MICRO_USD_PER_CENT

    @property
    def total_credits(self) -> int:
        return self.credits + self.bonus_credits


class PackageCatalog(BaseModel):
    """Every package, by name."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    packages: dict[str, CreditPackage]

    @model_validator(mode="after")
    def _names_match_keys(self) -> PackageCatalog:
        for key, package in self.packages.items():
            if key != package.name:
                raise ValueError(f"package {key!r} carries the name {package.name!r}")
        if not self.packages:
            raise ValueError("the catalogue has no packages")
        return self

    def get(self, name: str) -> CreditPackage | None:
        return self.packages.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.packages)


def parse_packages(text: str) -> PackageCatalog:
    """A catalogue from TOML text (``[packages.<name>]`` tables); raises on any invalid entry."""
    raw: dict[str, Any] = tomllib.loads(text)
    tables = raw.get("packages") or {}
    return PackageCatalog(packages={name: CreditPackage(name=name, **body) for name, body in tables.items()})


@cache
def load_packages() -> PackageCatalog:
    """The catalogue shipped in the layer (read once per process)."""
    return parse_packages(resources.files("tollgate").joinpath("data/packages.toml").read_text("utf-8"))
