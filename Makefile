# The two commands a newcomer runs: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test lint format test-sqlite test-postgres browser-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(PY) manage.py migrate
	$(PY) manage.py seed_demo
	@echo
	@echo "Open http://$(HOST):$(PORT)/ and log in with a login above. Ctrl-C stops the server."
	$(PY) manage.py runserver --noreload $(HOST):$(PORT)

# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
browser-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test-sqlite: $(VENV)/.installed browser-deps
	env -u DATABASE_URL $(PY) -m pytest

# The same suite on the real PostgreSQL service, when it answers (plus the concurrency tests).
test-postgres: $(VENV)/.installed
	@if $(PY) -c "import psycopg; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		DATABASE_URL=$(PG_URL) $(PY) -m pytest -m "not browser"; \
	else \
		echo "PostgreSQL at $(PG_URL) does not answer: skipping the PostgreSQL run"; \
	fi

test: lint test-sqlite test-postgres

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache
