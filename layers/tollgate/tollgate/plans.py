"""Plans and their limits, read from ``data/plans.toml`` and validated."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["org", "user"]
Metric = Literal["requests", "tokens", "cost_micro_usd"]
Window = Literal["hour", "day", "month"]
Kind = Literal["text", "chat", "embedding", "image"]


class LimitSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    scope: Scope
    metric: Metric
    window: Window
    max: int = Field(ge=0)
    kind: Kind | None = None
    provider: str | None = None

    @property
    def identity(self) -> tuple[str, str, str, str | None, str | None]:
        """What an org override must match to replace this limit."""
        return (self.scope, self.metric, self.window, self.kind, self.provider)


def check_overrides(overrides: Sequence[LimitSpec]) -> None:
    """An org's overrides name each limit (scope, metric, window, kind, provider) once."""
    identities = [spec.identity for spec in overrides]
    if len(set(identities)) != len(identities):
        raise ValueError("Two overrides for the same limit (scope, metric, window, kind, provider)")


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str
    title: str
    monthly_credits: int = Field(ge=0)
    limits: tuple[LimitSpec, ...]


class PlanCatalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    plans: dict[str, Plan]

    def get(self, name: str) -> Plan:
        return self.plans[name]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.plans)


@cache
def load_plans() -> PlanCatalog:
    raw = tomllib.loads(resources.files("tollgate").joinpath("data/plans.toml").read_text("utf-8"))
    plans = {name: Plan(name=name, **body) for name, body in raw["plans"].items()}
    return PlanCatalog(plans=plans)
