"""How a customer's request to the booking can end other than with the workflow's answer.

They carry no HTTP status: the JSON API and the pages decide how to say each one. What they
promise is what matters:

- ``common.errors.Refused``: the request was refused and changed nothing (a machine ``code``
  from ``orders.workflow_contract.ErrorType`` or the input checks, and a message for the customer).
- ``StillConfirming``: the request was handed to Temporal, whose answer did not come in time. It
  may still be carried out; the order shows what really happened, and retrying is safe.
- ``ServiceUnavailable``: Temporal could not be reached, so nothing was sent: nothing changed,
  and nothing will.
"""

from __future__ import annotations

from common.errors import ErrorCode

SERVICE_UNAVAILABLE = "The booking service is temporarily unavailable. Please try again in a moment."
SERVICE_UNAVAILABLE_CODE = ErrorCode.SERVICE_UNAVAILABLE


class StillConfirming(Exception):
    """Handed to Temporal, not answered yet."""


class ServiceUnavailable(Exception):
    """Nothing was sent."""

    message = SERVICE_UNAVAILABLE
