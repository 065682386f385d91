"""Settings for the flight-booking site, all read from the environment (see docs/CONFIGURATION.md).

Every variable has a default that suits local development; a bad value stops start-up with one
line naming the variable (``booking_site.env.SettingsError``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import drf_spectacular_sidecar

from booking_site import env
from common import failpoints, payload_codec, temporal_connection

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Django core ---------------------------------------------------------------------------
DEBUG = env.boolean("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise env.SettingsError(
            "SECRET_KEY is not set: it is required when DEBUG is false "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 (DEBUG only)
ALLOWED_HOSTS = env.listing("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env.listing("CSRF_TRUSTED_ORIGINS", "")

SERVER_HOST = env.string(
    "SERVER_HOST",
    "0.0.0.0",  # noqa: S104 (the web server listens on every interface, as in a container)
    pattern=r"[A-Za-z0-9.:\[\]\-]+",
    accepts="a host name or IP address",
)
SERVER_PORT = env.integer("SERVER_PORT", 8000, minimum=1, maximum=65535)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "flights",
    "orders",
    "payments",
    "temporal_worker",
]

MIDDLEWARE = [
    "booking_site.metrics.StatusLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "booking_site.ratelimit.RequestRateMiddleware",
    "booking_site.sessions.CheckedSessionMiddleware",
    # /livez and /readyz answer whatever Host a container probe sends: before CommonMiddleware,
    # which validates it (booking_site/health.py). Every other path keeps that validation.
    "booking_site.health.ProbeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "booking_site.errors.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "booking_site.urls"
WSGI_APPLICATION = "booking_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "booking_site.context_processors.booking",
            ],
        },
    },
]

# --- Data stores ---------------------------------------------------------------------------
DATABASE_URL = env.url(
    "DATABASE_URL",
    "postgres://postgres@127.0.0.1:5432/flight_booking",
    schemes=("postgres", "postgresql"),
)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env.integer("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"]["connect_timeout"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The seat holds' Redis: its maxmemory-policy must be noeviction (docs/DEPLOYMENT.md, "Redis").
REDIS_URL = env.url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
# The cache (sessions' read-through copies): a database of its own, by default database 1 of the
# holds' server; in production a server of its own with an LRU policy, so that cache pressure
# evicts only cache entries, never a hold.
CACHE_REDIS_URL = env.url(
    "CACHE_REDIS_URL", env.redis_database(REDIS_URL, 1), schemes=("redis", "rediss", "unix")
)
if CACHE_REDIS_URL == REDIS_URL:
    raise env.SettingsError(
        f"CACHE_REDIS_URL={CACHE_REDIS_URL!r} is not valid: expected another database or server "
        "than REDIS_URL's (the cache must never share the seat holds' keys)"
    )
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": CACHE_REDIS_URL,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
            # Seat holds talk to Redis directly and must see its errors; the cache (sessions'
            # read-through layer) may fall back to the database while Redis is away.
            "IGNORE_EXCEPTIONS": True,
        },
    },
    # Not a cache: the seat holds' connection (flights.holds, which uses its raw client only).
    "holds": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    },
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
# Sessions live in PostgreSQL with Redis in front: a Redis restart loses no customer's orders.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- Temporal ------------------------------------------------------------------------------
# Read the SDK's standard way (temporalio.envconfig: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
# TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE; TEMPORAL_HOST is an alias of the address):
# common/temporal_connection.py, shared with the tools. Every certificate and key is read and
# checked here, so a wrong one stops start-up naming its variable.
try:
    TEMPORAL_CONNECTION = temporal_connection.load(os.environ)
except temporal_connection.TemporalConfigError as error:
    raise env.SettingsError(str(error)) from None
TEMPORAL_HOST = TEMPORAL_CONNECTION.address
TEMPORAL_NAMESPACE = TEMPORAL_CONNECTION.namespace
# Payload encryption (common/payload_codec.py): every payload the web and the worker hand to
# Temporal, payment codes among them, is AES-GCM encrypted; empty: plain text.
try:
    PAYLOAD_KEYS = payload_codec.from_environ(os.environ)
except payload_codec.KeyConfigError as error:
    raise env.SettingsError(str(error)) from None
TEMPORAL_TASK_QUEUE = env.string(
    "TEMPORAL_TASK_QUEUE", "booking-queue", pattern=r"[A-Za-z0-9._\-]+", accepts="a task queue name"
)
TEMPORAL_UI_URL = env.string("TEMPORAL_UI_URL", "http://localhost:8233")
# The codec endpoint (booking_site/codec.py, staff only) answers the UI at these origins with the
# CORS it needs: by default TEMPORAL_UI_URL's; add https://cloud.temporal.io for Temporal Cloud's.
CODEC_ALLOWED_ORIGINS = env.listing(
    "CODEC_ALLOWED_ORIGINS", "{0.scheme}://{0.netloc}".format(urlsplit(TEMPORAL_UI_URL))
)
# How long a customer's request waits for Temporal's answer. Past it, a request that was handed
# to Temporal is answered 202 "still confirming" (it may still be carried out), never 503. Kept
# well under the workflow task timeout (10 s) so that one slow task costs a 202, not an error;
# see docs/ARCHITECTURE.md, "Timeouts that fit together".
TEMPORAL_ANSWER_TIMEOUT = env.duration("TEMPORAL_ANSWER_TIMEOUT", "5s", minimum=timedelta(milliseconds=100))

# --- Traces (common/tracing.py) ---------------------------------------------------------
# Where spans go, over OTLP/gRPC (Jaeger's or a collector's port 4317, say). Empty: tracing off.
OTEL_EXPORTER_OTLP_ENDPOINT = env.string("OTEL_EXPORTER_OTLP_ENDPOINT", "")

# --- Reconciliation (orders/reconciliation.py) --------------------------------------------
# How often the worker's Temporal Schedule runs it (0: the worker creates no schedule, and leaves
# an existing one as it is), and how long drift must last before a run repairs it.
RECONCILE_EVERY = env.duration("RECONCILE_EVERY", "1m")
RECONCILE_GRACE = env.duration("RECONCILE_GRACE", "2m")
# --- Retention (orders/retention.py): a second Temporal Schedule on the worker --------------
# How often it deletes expired sessions and idempotency records (0: no schedule), how long an
# Idempotency-Key is remembered after its request's outcome, and how many rows one batch deletes.
RETENTION_EVERY = env.duration("RETENTION_EVERY", "1h")
IDEMPOTENCY_KEY_RETENTION = env.duration("IDEMPOTENCY_KEY_RETENTION", "24h", minimum=timedelta(hours=1))
RETENTION_BATCH_SIZE = env.integer("RETENTION_BATCH_SIZE", 2000, minimum=1, maximum=100000)
# The operators' dashboards and traces, linked from the admin's overview when set (empty: no
# link, as under `make run`, where neither runs; docker-compose.yml sets both).
GRAFANA_URL = env.string("GRAFANA_URL", "")
TRACES_URL = env.string("TRACES_URL", "")  # Jaeger's UI
# --- Metrics (Prometheus format, never on the public site: docs/OPERATIONS.md, "Metrics") ----
# Where the web (gunicorn's master, summing its worker processes) and the worker serve their
# metrics; 0 turns one off. Bound to METRICS_HOST only: loopback by default, every interface in a
# container, where Prometheus scrapes them over the private network (docker-compose.yml).
METRICS_HOST = env.string(
    "METRICS_HOST", "127.0.0.1", pattern=r"[A-Za-z0-9.:\[\]\-]+", accepts="a host name or IP address"
)
METRICS_PORT = env.integer("METRICS_PORT", 9180, minimum=0, maximum=65535)
WORKER_METRICS_PORT = env.integer("WORKER_METRICS_PORT", 9181, minimum=0, maximum=65535)
TEMPORAL_METRICS_PORT = env.integer("TEMPORAL_METRICS_PORT", 9182, minimum=0, maximum=65535)

# --- The booking rules ---------------------------------------------------------------------
SEAT_RESERVATION_TIMEOUT = env.duration("SEAT_RESERVATION_TIMEOUT", "15m", minimum=timedelta(seconds=1))
# The Redis key of a held seat outlives the Temporal timer by this much: the timer releases the
# seats, the TTL is only the backstop for a hold that nothing else will ever release.
SEAT_HOLD_TTL_MARGIN = env.duration("SEAT_HOLD_TTL_MARGIN", "60s")
PAYMENT_VALIDATION_TIMEOUT = env.duration(
    "PAYMENT_VALIDATION_TIMEOUT", "10s", minimum=timedelta(milliseconds=100)
)
# Attempts in all, the first included (PAYMENT_MAX_RETRIES, its older name, is still read).
PAYMENT_MAX_ATTEMPTS = env.integer(
    "PAYMENT_MAX_ATTEMPTS", 3, minimum=1, maximum=20, old_name="PAYMENT_MAX_RETRIES"
)
PAYMENT_FAILURE_RATE = env.fraction("PAYMENT_FAILURE_RATE", 0.15)
PAYMENT_LATENCY_MIN = env.duration("PAYMENT_LATENCY_MIN", "1s")
PAYMENT_LATENCY_MAX = env.duration("PAYMENT_LATENCY_MAX", "8s")
if PAYMENT_LATENCY_MAX < PAYMENT_LATENCY_MIN:
    raise env.SettingsError(
        f"PAYMENT_LATENCY_MAX={os.environ.get('PAYMENT_LATENCY_MAX', '8s')!r} is not valid: "
        "expected a duration no shorter than PAYMENT_LATENCY_MIN"
    )
# Failpoints (common/failpoints.py): faults a test aims at an exact moment. Refused outside the
# test stack, so that no production configuration can switch one on.
try:
    FAILPOINTS = failpoints.parse(os.environ.get("FAILPOINTS", ""))
except ValueError as error:
    raise env.SettingsError(f"FAILPOINTS={os.environ['FAILPOINTS']!r} is not valid: {error}") from None
if FAILPOINTS and os.environ.get("STACK_MODE") != "test":
    raise env.SettingsError("FAILPOINTS is for the test stack only (STACK_MODE=test): never set it elsewhere")
MAX_SEATS_PER_ORDER = env.integer("MAX_SEATS_PER_ORDER", 9, minimum=1, maximum=50)
# Each seat change resets the hold and adds history: a cap keeps both bounded.
MAX_SEAT_CHANGES = env.integer("MAX_SEAT_CHANGES", 20, minimum=0, maximum=100)

# A hold's whole life, from the order's creation: a seat change resets the timer to the full
# SEAT_RESERVATION_TIMEOUT, but never past this (docs/CONFIGURATION.md, "Limits").
SEAT_HOLD_MAX_LIFE = env.duration("SEAT_HOLD_MAX_LIFE", "45m", minimum=timedelta(seconds=1))
if SEAT_HOLD_MAX_LIFE < SEAT_RESERVATION_TIMEOUT:
    raise env.SettingsError(
        f"SEAT_HOLD_MAX_LIFE={os.environ.get('SEAT_HOLD_MAX_LIFE', '45m')!r} is not valid: "
        "expected a duration no shorter than SEAT_RESERVATION_TIMEOUT"
    )

# --- Limits: what one client can hold and do (OWASP OAT-021; docs/CONFIGURATION.md, "Limits") --
# RATE_LIMITS=off turns every limit below off (benchmarks and load tests from one address).
RATE_LIMITS = env.boolean("RATE_LIMITS", True)
# The client is the socket's address, or the first untrusted hop of X-Forwarded-For when the
# socket's address is one of these proxies (empty: no proxy is trusted, the header is ignored).
TRUSTED_PROXIES = env.networks("TRUSTED_PROXIES", "")
# Per session: one live order per flight (always), and at most this many seats held at once.
SESSION_MAX_SEATS_HELD = env.integer("SESSION_MAX_SEATS_HELD", 9, minimum=1, maximum=100)
# Per client address, across all its sessions: seats held at once (counted from the live orders
# themselves), creates and seat changes per minute, and requests per second (a 2 s poll is 0.5/s).
ADDRESS_MAX_SEATS_HELD = env.integer("ADDRESS_MAX_SEATS_HELD", 30, minimum=1, maximum=100_000)
ADDRESS_MAX_CHANGES_PER_MINUTE = env.integer("ADDRESS_MAX_CHANGES_PER_MINUTE", 60, minimum=1, maximum=100_000)
ADDRESS_MAX_REQUESTS_PER_SECOND = env.integer(
    "ADDRESS_MAX_REQUESTS_PER_SECOND", 50, minimum=1, maximum=100_000
)

# --- Changes pushed: event streams (orders/streams.py; docs/CONFIGURATION.md, "Event streams") --
# EVENTS=off: the pages poll only (every 2 s, as they always do), and open no stream.
EVENTS = env.boolean("EVENTS", True)
# The streams' own ASGI process (`python -m booking_site.events_server`): where it listens, and
# where the pages find it. EVENTS_PUBLIC_PORT=0: on the page's own origin (a proxy sends
# /api/*/events there, as compose's Caddy does); a port: the page's host on that port (`make run`,
# no proxy), answered with CORS for that host's pages only.
EVENTS_SERVER_PORT = env.integer("EVENTS_SERVER_PORT", 8001, minimum=1, maximum=65535)
EVENTS_PUBLIC_PORT = env.integer("EVENTS_PUBLIC_PORT", 0, minimum=0, maximum=65535)
EVENTS_METRICS_PORT = env.integer("EVENTS_METRICS_PORT", 9183, minimum=0, maximum=65535)
# A comment line this often keeps proxies from closing an idle stream; the client's reconnection
# delay (`retry:`); streams open at once per session and per client address (429 past them).
EVENTS_HEARTBEAT = env.duration("EVENTS_HEARTBEAT", "15s", minimum=timedelta(milliseconds=200))
EVENTS_RETRY = env.duration("EVENTS_RETRY", "2s", minimum=timedelta(milliseconds=100))
for _name, _value, _most in (("EVENTS_HEARTBEAT", EVENTS_HEARTBEAT, 300), ("EVENTS_RETRY", EVENTS_RETRY, 60)):
    if _value > timedelta(seconds=_most):
        raise env.SettingsError(
            f"{_name}={os.environ.get(_name)!r} is not valid: expected a duration of at most {_most}s"
        )
EVENTS_MAX_STREAMS_PER_SESSION = env.integer("EVENTS_MAX_STREAMS_PER_SESSION", 10, minimum=1, maximum=1000)
EVENTS_MAX_STREAMS_PER_ADDRESS = env.integer(
    "EVENTS_MAX_STREAMS_PER_ADDRESS", 200, minimum=1, maximum=1_000_000
)

# --- Security ------------------------------------------------------------------------------
# HTTPS=true when the site is served over TLS (directly or behind a proxy that sets
# X-Forwarded-Proto): secure cookies, redirect to https and, with HSTS_SECONDS, HSTS.
HTTPS = env.boolean("HTTPS", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.integer("HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env.boolean("HSTS_PRELOAD", HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^(livez|readyz|healthz)$"]  # probes speak plain HTTP to the container
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation ------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
# Operators read times to the second (a whole booking takes well under one): booking_site/formats.
FORMAT_MODULE_PATH = ["booking_site.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise; no CDN, no build step) --------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Swagger UI for the API page (/api-docs/), from its PyPI package: served by us, so it works
# offline (no CDN). Only its Swagger UI folder, not the package's Redoc.
SWAGGER_UI_DIR = (
    Path(drf_spectacular_sidecar.__file__).parent / "static" / "drf_spectacular_sidecar" / "swagger-ui-dist"
)
STATICFILES_DIRS = [BASE_DIR / "static", ("swagger-ui", SWAGGER_UI_DIR)]
# Hashed, compressed file names (collectstatic) in production. The test suite's live server
# serves /static/ through Django's finders, which know only the plain names: it turns this off.
STATIC_MANIFEST = env.boolean("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Without collectstatic (tests, `make run`), serve straight from the apps' static folders.
WHITENOISE_USE_FINDERS = env.boolean("WHITENOISE_USE_FINDERS", not STATIC_MANIFEST)
WHITENOISE_MANIFEST_STRICT = False

# --- Logging: JSON on stdout in production, text in development ----------------------------
LOG_FORMAT = env.string(
    "LOG_FORMAT", "text" if DEBUG else "json", pattern=r"json|text", accepts="json or text"
)
LOG_LEVEL = env.string(
    "LOG_LEVEL",
    "INFO",
    pattern=r"DEBUG|INFO|WARNING|ERROR|CRITICAL",
    accepts="DEBUG, INFO, WARNING, ERROR or CRITICAL",
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"order_id": {"()": "booking_site.logging.OrderIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(order_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(order_id)s] %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["order_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
        "temporalio": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
    },
}
