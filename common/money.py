"""Money as the system keeps it: whole minor units (cents, pence) and an ISO 4217 currency, never a
float; formatted for people by Babel (the CLDR's symbols, digits and grouping), never by hand.

Pure Python apart from Babel, so that models, selectors, templates and the API share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_precision

CURRENCY_CODE = re.compile(r"[A-Z]{3}")
DEFAULT_LOCALE = "en_US"


@dataclass(frozen=True, order=True)
class Money:
    """An amount in the currency's minor units (``Money(45000, "USD")`` is $450.00)."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError(f"an amount is a whole number of minor units, not {self.amount!r}")
        if not CURRENCY_CODE.fullmatch(self.currency):
            raise ValueError(f"not an ISO 4217 currency code: {self.currency!r}")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    @property
    def major(self) -> Decimal:
        """The amount in major units, exactly (a Decimal, for Babel): 45000 USD -> 450.00."""
        return Decimal(self.amount).scaleb(-get_currency_precision(self.currency))

    def format(self, locale: str = DEFAULT_LOCALE) -> str:
        """``$450.00``, ``€1,250.00``, ``¥3,000``: as the locale writes it."""
        return format_currency(self.major, self.currency, locale=locale)

    def __str__(self) -> str:
        return self.format()

    def as_json(self) -> dict[str, Any]:
        """``{"amount": 45000, "currency": "USD"}``: minor units, as the API carries money."""
        return {"amount": self.amount, "currency": self.currency}


def total(prices: list[Money], *, currency: str) -> Money:
    """The sum of ``prices`` (all in ``currency``); nothing costs nothing in that currency."""
    result = Money(0, currency)
    for price in prices:
        result = result + price
    return result
