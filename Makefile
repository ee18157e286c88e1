# The few commands a developer uses daily. `make run` and `make test` are README's quick start.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test test-pgbouncer test-fast fuzz fuzz-long fuzz-mappings lint typecheck format install install-dev migrate bench chaos clean

## Set up (virtualenv, install, migrate, admin and demo app) and run web + worker + scheduler.
## (exec: make's SIGTERM goes straight to hub_run, with no shell in between to die instead.)
run: $(VENV)/.installed
	DEBUG=$${DEBUG:-1} exec $(PY) manage.py hub_run

## Install test dependencies, make sure PostgreSQL and Redis run, and run the whole suite.
test: $(VENV)/.installed-dev
	bash .ci/services.sh
	$(MAKE) --no-print-directory node-deps
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-pgbouncer

## The ingest, inbox and delivery tests again through a private PgBouncer in transaction pool
## mode (docs/scaling.md): the test database is created on PostgreSQL, then used through it.
PGBOUNCER_TESTS := tests/events/test_usage_events_api.py tests/integrations/sources/test_inbox.py \
	tests/integrations/test_delivery_engine.py tests/integrations/test_delivery_faults.py \
	tests/integrations/test_destinations.py tests/integrations/test_delivery_slots.py \
	tests/integrations/test_two_schedulers.py tests/events/test_rebuild_locks.py \
	tests/events/test_drain_concurrency.py
test-pgbouncer: $(VENV)/.installed-dev
	bash .ci/services.sh
	HUB_TEST_PGBOUNCER=1 $(PY) -m pytest $(PGBOUNCER_TESTS) $(PYTEST_ARGS)

## The suite without the slow parts (browser, worker processes, npm clients).
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not browser and not worker and not node and not chaos" $(PYTEST_ARGS)

## The chaos suite for 5 minutes (CI runs a 20-second variant as part of `make test`).
chaos: $(VENV)/.installed-dev
	bash .ci/services.sh
	CHAOS_SECONDS=$${CHAOS_SECONDS:-300} $(PY) -m pytest -s -m chaos tests/chaos

## Fuzz the API from its OpenAPI schema (schemathesis): the short pass CI runs in `make test`...
fuzz: $(VENV)/.installed-dev
	bash .ci/services.sh
	$(PY) -m pytest tests/test_api_fuzz.py $(PYTEST_ARGS)

## ...and a long random one, on demand (HUB_FUZZ_EXAMPLES per operation; minutes).
fuzz-long: $(VENV)/.installed-dev
	bash .ci/services.sh
	HUB_FUZZ_LONG=1 HUB_FUZZ_EXAMPLES=$${HUB_FUZZ_EXAMPLES:-2000} $(PY) -m pytest tests/test_api_fuzz.py $(PYTEST_ARGS)

## Mappings and triggers against Segment's own packages, long (HUB_DIFF_CASES of each; CI runs 3,000).
fuzz-mappings: $(VENV)/.installed-dev
	$(MAKE) --no-print-directory node-deps
	HUB_DIFF_CASES=$${HUB_DIFF_CASES:-100000} HUB_DIFF_SEED=$${HUB_DIFF_SEED:-random} $(PY) -m pytest tests/integrations/sources/test_segment_differential.py $(PYTEST_ARGS)

node-deps:
	@if [ -f tests/node/package.json ]; then cd tests/node && npm install --no-audit --no-fund --loglevel=error; fi
	@bash tests/node/action-destinations.sh  # Segment's action code, from the npm registry (not in git)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory typecheck

## mypy with django-stubs over the modules `[tool.mypy] files` in pyproject.toml lists. The
## django-stubs plugin loads hub.settings, which DEBUG lets start without production secrets.
typecheck: $(VENV)/.installed-dev
	DEBUG=1 $(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(VENV)/.installed
	$(PY) manage.py migrate

bench: $(VENV)/.installed-dev
	bash .ci/services.sh
	$(PY) -m bench

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP) install -r requirements-dev.txt
	touch $(VENV)/.installed $@

clean:
	rm -rf $(VENV) var staticfiles
