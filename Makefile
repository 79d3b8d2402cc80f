# XRouter developer commands. `make run` serves the gateway, `make test` runs
# the test suite; both set up what they need on a fresh machine.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

# Tests talk to the real PostgreSQL and Redis on this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/xrouter
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint format type migrations-check check bench services clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP) $@

run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} $(PY) manage.py collectstatic --noinput --verbosity 0
	DEBUG=$${DEBUG:-true} $(PY) manage.py serve

services:
	bash scripts/ensure-services.sh

test: $(DEV_STAMP) services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		$(PY) -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

type: $(DEV_STAMP)
	$(VENV)/bin/mypy .

migrations-check: $(DEV_STAMP)
	$(PY) manage.py makemigrations --check --dry-run

check: lint type migrations-check test

bench: $(DEV_STAMP) services
	$(PY) bench/run.py $(SCENARIOS)

clean:
	rm -rf $(VENV) var artifacts
