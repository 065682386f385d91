"""The three ways a customer's request can end other than with an answer, as domain errors.

They carry no HTTP status: the JSON API and the pages decide how to say each one. What they
promise is what matters:

- ``BookingRefused``: the request was refused and changed nothing (a machine ``code`` from
  ``shared.ErrorType`` or the input checks, and a message for the customer).
- ``StillConfirming``: the request was handed to Temporal, whose answer did not come in time. It
  may still be carried out; the order shows what really happened, and retrying is safe.
- ``ServiceUnavailable``: Temporal could not be reached, so nothing was sent: nothing changed,
  and nothing will.
"""

from __future__ import annotations

from collections.abc import Sequence

SERVICE_UNAVAILABLE = "The booking service is temporarily unavailable. Please try again in a moment."
SERVICE_UNAVAILABLE_CODE = "SERVICE_UNAVAILABLE"


class BookingRefused(Exception):
    def __init__(self, code: str, message: str, *, seats: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.seats = code, message, list(seats)


class StillConfirming(Exception):
    """Handed to Temporal, not answered yet."""


class ServiceUnavailable(Exception):
    """Nothing was sent."""

    message = SERVICE_UNAVAILABLE
