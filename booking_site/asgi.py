"""The ASGI application of the event streams' process (``python -m booking_site.events_server``):
the same Django project, of which that process serves only the streams (orders/streams.py); the
pages stay with gunicorn's sync workers (booking_site/wsgi.py).

One thread for the sync work of every request. Django's own ASGI handler gives each request a
thread of its own for its sync parts (the middleware, the ownership check), kept until the
response ends: for a stream, a thread and a PostgreSQL connection held for as long as the page
stays open (measured: 1,000 streams ran PostgreSQL out of connections). Here the sync parts of
all requests take turns on one thread, with one connection; a stream's sync work is a few
milliseconds when it opens, and none while it is open (docs/PERFORMANCE.md, "Event streams").
"""

import os
import sys

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")

from booking_site.env import SettingsError


class StreamsHandler(ASGIHandler):
    """Django's ASGI handler, without a ``ThreadSensitiveContext`` (a thread) per request."""

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            raise ValueError(f"only HTTP is served here, not {scope['type']}")
        await self.handle(scope, receive, send)


try:
    from django.conf import settings

    from common import tracing

    django.setup(set_prefix=False)
    tracing.setup(service="booking-events", endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    application = StreamsHandler()
except SettingsError as error:
    print(f"configuration error: {error}", file=sys.stderr)
    sys.exit(2)
