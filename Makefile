# The two commands of the README: `make run` (sandbox by default) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test lint install test-fast browser-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	PORT=$(PORT) $(PY) -m gateway.devserver

test: install browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow and not browser" --nomigrations -x $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

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
