#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def asks_for_help(args: list[str]) -> bool:
    """``manage.py``, ``manage.py help [command]``, ``manage.py <command> --help``."""
    return not args or args[0] == "help" or bool({"-h", "--help"} & set(args))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booking_site.settings")
    if asks_for_help(sys.argv[1:]) and not os.environ.get("SECRET_KEY"):
        # Help signs nothing: a developer reads a command's options before configuring anything.
        os.environ["SECRET_KEY"] = "help-only-" + "x" * 40
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
