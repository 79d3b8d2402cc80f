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

.PHONY: run test lint format type migrations-check check bench services clean lock lock-check \
	deploy-check image migrations-lint drill-deploy drill-redis drill-postgres

# Installs come from the hash-pinned locks (scripts/lock.py), never from the
# ranges in requirements*.txt directly: a re-uploaded or tampered release fails.
PIP_INSTALL := $(PY) -m pip install --quiet --require-hashes
# uv resolves the locks (`make lock`); it is not needed to install them.
UV_VERSION := 0.13.9

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.lock requirements.txt | $(PY)
	$(PY) scripts/lock.py check
	$(PIP_INSTALL) -r requirements.lock
	touch $@

$(DEV_STAMP): requirements.lock requirements-dev.lock requirements.txt requirements-dev.txt | $(PY)
	$(PY) scripts/lock.py check
	$(PIP_INSTALL) -r requirements-dev.lock
	touch $(STAMP) $@

# Re-resolve requirements.lock and requirements-dev.lock after editing
# requirements*.txt; pins that still fit are kept (UPGRADE=1 moves them all).
lock: | $(PY)
	test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(PY) scripts/lock.py compile $(if $(UPGRADE),--upgrade)

# Fails, naming the fix, when requirements*.txt and the locks disagree.
lock-check: | $(PY)
	$(PY) scripts/lock.py check

run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(PY) manage.py migrate --noinput --verbosity 0
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

# Expand/contract: fail a migration the previous release, still serving
# during a deploy, could not run against (django-migration-linter).
migrations-lint: $(DEV_STAMP) services
	$(PY) scripts/ensure_database.py $(TEST_DATABASE_URL)
	DATABASE_URL=$(TEST_DATABASE_URL) LOG_LEVEL=WARNING \
		DJANGO_SETTINGS_MODULE=xrouter_site.settings_migration_lint \
		$(PY) manage.py lintmigrations -q ok ignore

check: lint type migrations-check migrations-lint test

bench: $(DEV_STAMP) services
	$(PY) bench/run.py $(SCENARIOS)

# Tools of deploy-check in their own venv, from their own hash lock.
DEPLOY_TOOLS := var/deploy-tools
$(DEPLOY_TOOLS)/.installed: deploy/requirements-deploy.lock
	$(PYTHON) -m venv $(DEPLOY_TOOLS)
	$(DEPLOY_TOOLS)/bin/pip install --quiet --require-hashes -r deploy/requirements-deploy.lock
	touch $@

# Offline: helm lint + template (default and deploy/helm/examples/*), every
# object against the Kubernetes schemas, the chart's promises, Containerfile lint.
deploy-check: $(DEPLOY_TOOLS)/.installed
	$(DEPLOY_TOOLS)/bin/python deploy/check.py

# Build deploy/Containerfile with buildah (debootstrap'd Debian base) and run
# the smoke test inside the image: /healthz and one chat call to the emulator.
image:
	bash scripts/build-image.sh

# Failure drills: real components on loopback (ports 27000-27999), bounded
# load, one fault, promises checked; each exits 1 when one is broken and
# stops what it started. Not in `make test` (about a minute each); their
# last output is in docs/operations.md. DRILL_ARGS passes options.
DRILL_APT = bash scripts/ensure-packages.sh
drill-deploy: $(STAMP) services
	$(DRILL_APT) haproxy:haproxy
	$(PY) deploy/drills/drill_deploy.py $(DRILL_ARGS)

drill-redis: $(STAMP) services
	$(DRILL_APT) redis-sentinel:redis-sentinel
	$(PY) deploy/drills/drill_redis.py $(DRILL_ARGS)

drill-postgres: $(STAMP) services
	$(DRILL_APT) patroni:patroni etcd:etcd-server etcdctl:etcd-client
	$(PY) deploy/drills/drill_postgres.py $(DRILL_ARGS)

clean:
	rm -rf $(VENV) var artifacts
