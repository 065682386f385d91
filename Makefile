# The two commands that matter: `make run` (the whole system) and `make test` (the whole suite).
# Both create the virtualenv and install the locked dependencies only when uv.lock changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test mutate fuzz install lint format bench chaos screenshots superuser worker manage temporal system-packages clean audit abuse

run: $(STAMP) ## Start PostgreSQL, Redis, Temporal, the worker and the web server
	$(BIN)/python -m devstack run

test: $(STAMP) system-packages ## Run the whole test suite against real services
	$(BIN)/python -m devstack test $(ARGS)

mutate: $(STAMP) ## Mutation testing of the workflow and the seat holds; prints the score (docs/TESTING.md)
	$(BIN)/python -m tools.mutate $(ARGS)

# Schemathesis against the API's OpenAPI document, alone and longer than in `make test`, on the
# same self-started stack: EXAMPLES per operation and phase, MAX_TIME seconds in all (0: no
# limit), SEED to replay a run (its seed is printed). See docs/TESTING.md.
EXAMPLES ?= 500
MAX_TIME ?= 0
SEED ?=
fuzz: $(STAMP) ## Fuzz the API against its OpenAPI document (make fuzz EXAMPLES=2000)
	FUZZ_EXAMPLES=$(EXAMPLES) FUZZ_SECONDS=$(MAX_TIME) FUZZ_SEED=$(SEED) \
	  $(BIN)/python -m devstack test -m fuzz -s $(ARGS)

$(STAMP): pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv sync --frozen --quiet
	touch $(STAMP)

install: $(STAMP)

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here);
# Debian's docker-compose validates docker-compose.yml without a Docker engine; Debian's
# Prometheus scrapes the test stack in tests/test_prometheus.py, Debian's Caddy is the TLS proxy of
# the production smoke test (tests/test_production.py) and Debian's nginx terminates TLS in front
# of Temporal in tests/test_temporal_tls.py (only their binaries are used: the tests start them on
# free ports with their own config; the packages' own services are not needed).
system-packages:
	@command -v chromium >/dev/null && command -v docker-compose >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose >/dev/null; }
	@command -v caddy >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends caddy >/dev/null; }
	@command -v prometheus >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null; }

lint: $(STAMP) ## ruff (lint + format check), mypy, and the architecture's import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=true $(BIN)/mypy temporal_worker common orders flights payments booking_site tools
	$(BIN)/lint-imports

# pip-audit over the locked production dependencies (docs/DEPLOYMENT.md, "Audited dependencies").
# It needs pypi.org's per-version JSON API (or, with AUDIT_SERVICE=osv, api.osv.dev); --strict
# fails on a package it could not look up, instead of "no known vulnerabilities" about packages it
# never checked. Not part of `lint`: neither service answers on the machines `make test` runs on.
AUDIT_SERVICE ?= pypi
audit: $(STAMP) ## Audit the locked dependencies for known vulnerabilities (needs pypi.org or osv.dev)
	@mkdir -p .data
	$(BIN)/uv export --frozen --no-dev --no-default-groups --no-emit-project --format requirements-txt \
	  --quiet -o .data/audit-requirements.txt
	$(BIN)/uv tool run --quiet pip-audit==2.10.1 --strict --disable-pip --progress-spinner off \
	  --vulnerability-service $(AUDIT_SERVICE) -r .data/audit-requirements.txt

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: record-histories
record-histories: $(STAMP) ## Record today's workflow histories for the replay tests (never the pre_* ones; docs/TESTING.md)
	$(BIN)/python -m tests.histories.record $(ARGS)

screenshots: ## Refresh the README's screenshots (docs/screenshots) from the browser tests
	UPDATE_SCREENSHOTS=1 $(MAKE) test ARGS="-m browser"

chaos: $(STAMP) ## The fault suite: book while killing and freezing each part, then check (about 4 min)
	$(BIN)/python -m tools.chaos $(ARGS)

abuse: $(STAMP) ## The hoarding check: bots from one address try to hold a flight while customers book (about 1.5 min)
	$(BIN)/python -m tools.abuse $(ARGS)

bench: $(STAMP) ## Measure the running stack (start it with `RATE_LIMITS=off make run` first)
	$(BIN)/python -m tools.bench $(ARGS)

# Commands beside a running `make run`: they load the addresses it wrote to its data folder.
STACK_ENV = set -a && . "$${STACK_DATA_DIR:-.data}/stack.env" && set +a &&

superuser: $(STAMP) ## Create the first admin user on the `make run` database
	$(STACK_ENV) $(BIN)/python manage.py createsuperuser

worker: $(STAMP) ## Run only a worker against the `make run` services
	$(STACK_ENV) $(BIN)/python manage.py runworker

manage: $(STAMP) ## A manage.py command on the `make run` services (make manage ARGS="reconcile_orders")
	$(STACK_ENV) $(BIN)/python manage.py $(ARGS)

temporal: $(STAMP) ## The Temporal CLI on the `make run` server (make temporal ARGS="schedule list")
	$(STACK_ENV) TEMPORAL_ADDRESS="$$TEMPORAL_HOST" $(BIN)/temporal $(ARGS)

clean:
	rm -rf .data staticfiles .pytest_cache .ruff_cache .mypy_cache mutants
