"""The price table (pure once loaded): USD per million tokens per model, longest-prefix matched."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import read_toml
from mesh.errors import ConfigError

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable", "load_prices"]

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")
MILLION = 1_000_000


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class PriceTable:
    def __init__(self, models: dict[str, Price]) -> None:
        self.models = models
        # Longest names first, so the most specific prefix wins.
        self._by_length = sorted(models, key=len, reverse=True)

    def price(self, model: str) -> Price | None:
        exact = self.models.get(model)
        if exact is not None:
            return exact
        for name in self._by_length:
            if model.startswith(name):
                return self.models[name]
        return None

    def cost(self, model: str, input_tokens: int, output_tokens: int, cached_input: int = 0) -> float | None:
        """USD for one call; None when the model has no price (tokens are still counted)."""
        p = self.price(model)
        if p is None:
            return None
        cached_rate = p.cached_input if p.cached_input is not None else p.input
        fresh = max(input_tokens - cached_input, 0)
        return (fresh * p.input + cached_input * cached_rate + output_tokens * p.output) / MILLION


def load_prices(path: Path | None = None) -> PriceTable:
    path = path or DEFAULT_PRICES
    data = read_toml(path, "price table")
    try:
        models = {name: Price.model_validate(v) for name, v in data.get("models", {}).items()}
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"price table {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return PriceTable(models)
