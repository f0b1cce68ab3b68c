# The two commands of the README: `make run` (sandbox by default) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test test-in-process lint install test-fast browser-deps proxy-deps clean lock lock-check

# Installs come only from the hashed lock files (requirements.txt for production hosts,
# requirements-dev.txt for development and CI); pyproject.toml holds the allowed ranges.
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# `make lock` after changing a dependency in pyproject.toml. uv keeps every pin already in the
# lock files unless the ranges exclude it, so re-locking is deterministic and takes seconds;
# to move a package to its newest allowed release, delete its lines from both files first.
UV := $(VENV)/bin/uv
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock"
LOCK_DIR ?= .

$(UV):
	$(MAKE) install

lock: $(UV)
	cd $(LOCK_DIR) && $(abspath $(UV)) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.txt
	cd $(LOCK_DIR) && $(abspath $(UV)) pip compile pyproject.toml --extra dev -c requirements.txt \
		$(LOCK_FLAGS) -o requirements-dev.txt

# The lock files match pyproject.toml: re-locking a copy changes nothing.
lock-check: $(UV)
	@tmp=$$(mktemp -d) && cp pyproject.toml requirements.txt requirements-dev.txt "$$tmp"/ && \
	$(MAKE) --no-print-directory lock LOCK_DIR="$$tmp" && \
	if diff -u requirements.txt "$$tmp"/requirements.txt && \
		diff -u requirements-dev.txt "$$tmp"/requirements-dev.txt; then \
		echo "lock files match pyproject.toml"; rm -rf "$$tmp"; \
	else echo "lock files are out of date with pyproject.toml: run make lock"; \
		rm -rf "$$tmp"; exit 1; fi

run: install
	PORT=$(PORT) $(PY) -m gateway.devserver

# The suite in two passes: the in-process tests on TEST_WORKERS workers (pytest-xdist; each
# worker has its own test database; an idle worker takes queued tests from a busy one, so the
# slow transactional tests do not end the pass on one worker), then the suites that start real
# processes or drive the browser one at a time (their timings and ports are measured on a quiet
# machine). Pass 2 selecting nothing (e.g. PYTEST_ARGS=tests/billing) is not a failure.
#
# On SQLite the first pass builds its tables straight from the models (--nomigrations):
# dj-stripe's migrations cost over a minute of CPU per worker. On PostgreSQL (DATABASE_URL
# postgres://…) it runs the real migrations, data migrations included, on the engine production
# runs: CI's PostgreSQL pass is where they are proved. Pass 2's processes start on a SQLite file
# that `manage.py migrate` built (tests/processes.py), and the upgrade drill migrates PostgreSQL.
TEST_WORKERS ?= 2
FAST := -m "not slow and not browser"
MIGRATIONS = $(if $(filter postgres%,$(DATABASE_URL)),,--nomigrations)
IN_PROCESS = -n $(TEST_WORKERS) --dist worksteal $(FAST) $(MIGRATIONS)

test: install browser-deps proxy-deps
	$(PY) -m pytest $(IN_PROCESS) $(PYTEST_ARGS)
	$(PY) -m pytest -m "slow or browser" --durations=10 $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Only the first pass (what .ci/run repeats on PostgreSQL, with the real migrations).
test-in-process: install
	$(PY) -m pytest $(IN_PROCESS) $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest $(FAST) --nomigrations -x $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo

clean:
	rm -rf $(VENV) db.sqlite3* var staticfiles

# Debian's Chromium for the browser suite (Playwright drives it through executable_path, so no
# `playwright install`), and axe-core from package-lock.json for its accessibility checks.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser-deps: node_modules/axe-core/axe.min.js
	@command -v chromium >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

node_modules/axe-core/axe.min.js: package-lock.json
	@command -v npm >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq npm)
	npm ci --no-audit --no-fund --silent
	touch $@

# Debian's Caddy: the reverse proxy of deploy/caddy/Caddyfile, which the scale-out drill runs.
proxy-deps:
	@command -v caddy >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq caddy)
