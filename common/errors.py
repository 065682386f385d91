"""``Refused``: the one error for a request that was refused and changed nothing.

It carries a machine ``code`` (``orders.booking.ErrorType`` or an input check's), a message for
the customer and, when seats are at fault, the seats. It carries no HTTP status: the JSON API
(``common.api.STATUS_OF``) and the pages decide how to say it.
"""

from __future__ import annotations

from collections.abc import Sequence


class Refused(Exception):
    def __init__(self, code: str, message: str, *, seats: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.seats = code, message, list(seats)
