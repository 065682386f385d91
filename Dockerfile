# syntax=docker/dockerfile:1
# The web (gunicorn), the event streams (python -m booking_site.events_server) and the worker
# (manage.py runworker) share this image.

# --- build: resolve the locked production dependencies into a virtualenv --------------------
FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
# Only [project].dependencies: no dev tools, no test servers, no embedded PostgreSQL or Redis.
RUN uv sync --frozen --no-dev --no-default-groups --no-install-project
COPY . .
# The app's own bytecode, made here: the image runs with PYTHONDONTWRITEBYTECODE, and without it
# Temporal's workflow sandbox compiles the workflow's source for every booking it starts.
RUN /app/.venv/bin/python -m compileall -q --invalidation-mode unchecked-hash \
    booking_site common flights orders payments temporal_worker
RUN DEBUG=false SECRET_KEY=build-only-not-secret /app/.venv/bin/python manage.py collectstatic --noinput

# --- runtime: the virtualenv, the code and the collected static files, as a non-root user ----
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=booking_site.settings DEBUG=false SERVER_PORT=8000
RUN groupadd --system app && useradd --system --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build --chown=app:app /app /app
USER app
EXPOSE 8000 8001
# Liveness only (/livez: the process answers): an orchestrator that restarts an unhealthy container
# must not restart every web while Temporal or Redis restarts. Readiness (/readyz) is the proxy's
# and the orchestrator's traffic gate (docker-compose.yml, docs/OPERATIONS.md "Probes").
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2).status != 200)"
# gunicorn with booking_site/gunicorn.py, after a check of its settings (a bad one: one line).
CMD ["python", "-m", "booking_site.gunicorn"]
