"""The shapes of the system's identifiers and codes, each written once.

Pure Python (no Django), so that the workflow's validators can use them as well as the input
checks (``common.inputs``), the URL converters and the models' check constraints.
"""

from __future__ import annotations

import re
from typing import TypeGuard

# A flight's id and an order's id, as their check constraints state them (within their columns).
FLIGHT_ID = r"fl-[0-9a-z]{1,17}"
ORDER_ID = r"ord-[0-9a-z]{16,36}"
# Row (1 to 999) and the seat's letter: 12A.
SEAT_CODE = re.compile(r"[1-9][0-9]{0,2}[A-Z]")
# Exactly five ASCII digits (not any Unicode digit, which str.isdigit would accept).
PAYMENT_CODE = re.compile(r"[0-9]{5}")
# Printable ASCII without spaces (a UUID is the usual choice), as the IETF draft allows.
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# What Django's session store makes (32 of [a-z0-9]) and accepts (8 or more, in a 40-wide column).
SESSION_KEY = re.compile(r"[0-9a-z]{8,40}")


# What a customer reads when a seat list or a payment code is refused: the same words from the
# web's input checks (orders.validation, common.inputs) and from the workflow's validators.
PAYMENT_CODE_EXPECTED = "The payment code must be exactly 5 digits, such as 12345"
CHOOSE_A_SEAT = "Choose at least one seat"


def seats_named(seats: list[str]) -> str:
    """ "Seat 12A" or "Seats 12A, 12B": how a message names the seats at fault."""
    return f"{'Seat' if len(seats) == 1 else 'Seats'} {', '.join(seats)}"


def listed_twice(seats: list[str]) -> str:
    """The message for a seat list that names ``seats`` more than once."""
    verb = "is" if len(seats) == 1 else "are"
    return f"{seats_named(seats)} {verb} listed more than once"


def duplicates_in(seats: list[str]) -> list[str]:
    """The seats listed more than once, sorted."""
    return sorted({seat for seat in seats if seats.count(seat) > 1})


def is_payment_code(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and PAYMENT_CODE.fullmatch(value) is not None
