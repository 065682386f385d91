"""The session cookie, read through ``common.inputs``: a cookie that cannot hold one of our
session keys (a NUL byte, a stray character, the wrong length) is no session at all, and never
reaches the cache or the database as a key."""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest

from common import inputs


class CheckedSessionMiddleware(SessionMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        key = inputs.session_key(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        request.session = self.SessionStore(key)
