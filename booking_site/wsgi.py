import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")

from booking_site.env import SettingsError

try:
    application = get_wsgi_application()
except SettingsError as error:
    print(f"configuration error: {error}", file=sys.stderr)
    sys.exit(2)
