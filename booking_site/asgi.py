"""The ASGI application of the event streams' process (``python -m booking_site.events_server``):
the same Django project, of which that process serves only the streams (orders/streams.py); the
pages stay with gunicorn's sync workers (booking_site/wsgi.py)."""

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")

from booking_site.env import SettingsError

try:
    from django.conf import settings

    from common import tracing

    tracing.setup(service="booking-events", endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    application = get_asgi_application()
except SettingsError as error:
    print(f"configuration error: {error}", file=sys.stderr)
    sys.exit(2)
