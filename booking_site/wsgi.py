import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")

from booking_site.env import SettingsError

try:
    from django.conf import settings

    from common import tracing

    # Here, not in gunicorn's arbiter: each process after the fork starts its own exporter thread.
    tracing.setup(service="booking-web", endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    application = get_wsgi_application()
except SettingsError as error:
    print(f"configuration error: {error}", file=sys.stderr)
    sys.exit(2)
