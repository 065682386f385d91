from django.conf import settings
from django.http import HttpRequest

from payments.gateway import TEST_CODES

# How often a live part of a page (the flight list, a seat map, an order) asks whether it changed:
# htmx's "every" trigger, written once for every template.
POLL_EVERY = "2s"


def duration_text(seconds: float) -> str:
    """900 -> "15 minutes", 30 -> "30 seconds", 90 -> "90 seconds"."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def booking(request: HttpRequest) -> dict[str, object]:
    """What every page shows about the demo: the hold, the simulated failure rate, the test codes."""
    return {
        "payment_failure_percent": round(settings.PAYMENT_FAILURE_RATE * 100),
        "hold_text": duration_text(settings.SEAT_RESERVATION_TIMEOUT.total_seconds()),
        "test_codes": TEST_CODES,
        "poll_every": POLL_EVERY,
    }
