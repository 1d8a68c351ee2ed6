# APG Event Bus — the two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench-ingest clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Embedded bus on http://127.0.0.1:5000 (SQLite, SQL event log, in-process workers).
run: $(STAMP)
	$(PY) run.py

## The whole test suite (needs PostgreSQL on 127.0.0.1:5432; starts its own Kafka-protocol broker).
## The browser tests run in a second pytest process: Playwright's sync API keeps an event loop running
## in the main thread for as long as its browser lives, which would break asyncio.run in other tests.
test: $(STAMP)
	$(PY) -m pytest --ignore=tests/e2e $(PYTEST_ARGS)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check app workers tests bench config.py run.py

bench-ingest: $(STAMP)
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) instance .pytest_cache
