"""Typed readers for settings that come from the environment.

Each reader returns a value of the right type or raises ``SettingsError`` with one line that
names the variable, the value it got and what it accepts. ``manage.py``, ``wsgi.py`` and the
gunicorn configuration turn that error into a single line on stderr and a non-zero exit.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


class SettingsError(ImproperlyConfigured):
    """A setting from the environment has a value it does not accept."""


def _raw(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _fail(name: str, value: str, accepts: str) -> SettingsError:
    return SettingsError(f"{name}={value!r} is not valid: expected {accepts}")


def parse_duration(value: str) -> timedelta:
    """``900``, ``900s``, ``15m``, ``1.5h``, ``250ms`` -> timedelta; ValueError otherwise."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(value)
    amount, unit = match.groups()
    return timedelta(seconds=float(amount) * _UNIT_SECONDS[unit])


def duration(name: str, default: str, *, minimum: timedelta = timedelta(0)) -> timedelta:
    value = _raw(name, default)
    accepts = "a duration such as 900, 900s, 15m or 250ms"
    try:
        result = parse_duration(value)
    except ValueError:
        raise _fail(name, value, accepts) from None
    if result < minimum:
        raise _fail(name, value, f"{accepts}, at least {minimum.total_seconds():g}s")
    return result


def integer(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    old_name: str | None = None,
) -> int:
    """A whole number within bounds. ``old_name``, a name the setting had before, is still read
    when ``name`` is not set (the two set to different values are refused)."""
    if old_name is not None and old_name in os.environ:
        if name in os.environ and os.environ[name] != os.environ[old_name]:
            raise SettingsError(
                f"{name}={os.environ[name]!r} and {old_name}={os.environ[old_name]!r} disagree: "
                f"{old_name} is the older name of {name}; set {name} alone"
            )
        name = name if name in os.environ else old_name
    value = _raw(name, str(default))
    bounds = f" from {minimum}" if minimum is not None else ""
    bounds += f" to {maximum}" if maximum is not None else ""
    try:
        result = int(value)
    except ValueError:
        raise _fail(name, value, f"a whole number{bounds}") from None
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        raise _fail(name, value, f"a whole number{bounds}")
    return result


def fraction(name: str, default: float) -> float:
    value = _raw(name, str(default))
    try:
        result = float(value)
    except ValueError:
        result = -1.0
    if not 0.0 <= result <= 1.0:
        raise _fail(name, value, "a number from 0 to 1, such as 0.15")
    return result


def boolean(name: str, default: bool) -> bool:
    value = _raw(name, "true" if default else "false").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _fail(name, value, "true or false")


def string(name: str, default: str, *, pattern: str | None = None, accepts: str = "") -> str:
    value = _raw(name, default)
    if pattern is not None and not re.fullmatch(pattern, value):
        raise _fail(name, value, accepts or f"a value matching {pattern}")
    return value


def listing(name: str, default: str) -> list[str]:
    return [item.strip() for item in _raw(name, default).split(",") if item.strip()]


def networks(name: str, default: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of CIDRs (``10.0.0.0/8, ::1/128``; a bare address is one host)."""
    value = _raw(name, default)
    try:
        return [ipaddress.ip_network(item, strict=False) for item in listing(name, default)]
    except ValueError:
        raise _fail(name, value, "a comma-separated list of CIDRs, such as 10.0.0.0/8,192.0.2.7/32") from None


def url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    value = _raw(name, default)
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise _fail(name, value, "a URL starting with " + " or ".join(f"{s}://" for s in schemes))
    return value


def redis_database(value: str, database: int) -> str:
    """The same Redis server as ``value``, another database number of it."""
    if value.startswith("unix://"):  # unix:///path/redis.sock?db=0
        base, _, query = value.partition("?")
        fields = dict(urllib.parse.parse_qsl(query)) | {"db": str(database)}
        return f"{base}?{urllib.parse.urlencode(fields)}"
    parts = urllib.parse.urlsplit(value)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def host_port(name: str, default: str) -> str:
    return string(
        name,
        default,
        pattern=r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}",
        accepts="host:port, such as localhost:7233",
    )
