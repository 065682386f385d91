from django.conf import settings
from django.http import HttpRequest

from payments.gateway import TEST_CODES


def booking(request: HttpRequest) -> dict[str, object]:
    """What every page shows about the demo: the simulated failure rate and the test codes."""
    return {
        "payment_failure_percent": round(settings.PAYMENT_FAILURE_RATE * 100),
        "hold_minutes": settings.SEAT_RESERVATION_TIMEOUT.total_seconds() / 60,
        "test_codes": TEST_CODES,
    }
