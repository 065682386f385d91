#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")
    from django.core.management import execute_from_command_line

    from booking_site.env import SettingsError

    try:
        execute_from_command_line(sys.argv)
    except SettingsError as error:
        # One clear line, not a traceback: the operator only needs to fix one variable.
        print(f"configuration error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
