"""One customer's browser session over real HTTP: the client of the chaos suite, the hoarding
check, the bench and the tests (tests/helpers.py). Only the standard library.

A session keeps its cookies (the session cookie is what makes an order its customer's), sends
the headers it was given with every request (``X-Forwarded-For``, for a customer elsewhere), an
``Idempotency-Key`` when asked, and JSON bodies. It talks over keep-alive connections, one per
thread that uses it (a test may send the same session's requests from two threads at once), and
sends a request again only when a connection it had kept turned out to be closed by the server
before any answer came: never after a timeout, which could have reached the server.
"""

from __future__ import annotations

import http.client
import http.cookies
import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# What a kept connection the server has closed in the meantime raises on its next request.
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def data(self) -> dict:
        """The JSON body, leniently: {} for an empty body, and the first 200 characters as
        ``{"raw": ...}`` for one that is not JSON (a proxy's error page)."""
        if not self.body:
            return {}
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return {"raw": self.body[:200].decode(errors="replace")}
        return parsed if isinstance(parsed, dict) else {"json": parsed}


class Session:
    """One customer's browser session against ``url`` (``http://host:port``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30,
        headers: dict[str, str] | None = None,
        keep_cookies: bool = True,
    ) -> None:
        """``headers``: sent with every request. ``keep_cookies`` off: every request a new
        session, as a client that drops its cookies."""
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "localhost", parts.port or 80
        self.timeout, self.headers, self.keep_cookies = timeout, dict(headers or {}), keep_cookies
        self.cookies: dict[str, str] = {}
        self._lock = threading.Lock()  # the cookies, shared by the threads
        self._local = threading.local()  # each thread's own connection

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        key: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        """``payload`` is sent as JSON, ``raw`` as it is (with ``content_type``); ``key`` as the
        Idempotency-Key header. Any status is returned; a failed connection raises OSError."""
        body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = content_type
        if key is not None:
            headers["Idempotency-Key"] = key
        with self._lock:
            if self.cookies and self.keep_cookies:
                headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        for attempt in range(2):
            connection, reused = self._connection(timeout)
            try:
                connection.request(method, path, body=body, headers=headers)
                reply = connection.getresponse()
                data = reply.read()
                break
            except (http.client.HTTPException, OSError) as error:
                connection.close()
                self._local.connection = None
                if attempt or not (reused and isinstance(error, STALE)):
                    if isinstance(error, OSError):
                        raise
                    raise ConnectionError(f"{method} {path}: {error!r}") from error
        self._remember(reply.msg.get_all("Set-Cookie") or [])
        return Response(reply.status, data, dict(reply.getheaders()))

    def call(
        self, method: str, path: str, body: object = None, key: str | None = None
    ) -> tuple[int, dict, dict[str, str]]:
        """``request``, answered as (status, the JSON body leniently, headers)."""
        reply = self.request(method, path, body, key=key)
        return reply.status, reply.data, reply.headers

    def _connection(self, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was kept from an earlier request."""
        timeout = self.timeout if timeout is None else timeout
        connection = getattr(self._local, "connection", None)
        reused = connection is not None
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=timeout
            )
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection, reused

    def _remember(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            cookie = http.cookies.SimpleCookie()
            cookie.load(header)
            with self._lock:
                for name, morsel in cookie.items():
                    if morsel["max-age"] == "0" or not morsel.value:  # Django's delete_cookie
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
