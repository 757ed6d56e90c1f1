# Each target sets itself up: a .venv with the project and its test extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-sqlite test-postgres lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The demo's whole set-up: the venv, then the system tools (without them it skips batch jobs).
demo: $(STAMP)
	bash scripts/sysdeps.sh || echo "the demo goes on without them and skips its batch part" >&2
	$(BIN)/lake demo --root ./demo-lake --fresh

PYTEST := $(BIN)/python -m pytest -n 2 --dist loadfile -p no:cacheprovider
# The suites that run a second time with every lake's catalog in PostgreSQL.
PG_TESTS := tests/catalog tests/governance tests/batch

# Both backends: a throwaway PostgreSQL (scripts/pg_cluster.sh, installed from Debian if
# missing) for the whole run; without one, the PostgreSQL part says why it is skipped.
test: $(STAMP)
	bash scripts/sysdeps.sh
	$(BIN)/ruff check .
	bash scripts/pg_cluster.sh run $(MAKE) --no-print-directory test-sqlite test-postgres

# Everything on SQLite (the PostgreSQL cases of the store suite too when LAKE_TEST_PG is set).
test-sqlite: $(STAMP)
	$(PYTEST) tests

# The catalog, transaction, crash, governance and batch tests with the catalog in PostgreSQL.
test-postgres: $(STAMP)
	@if [ -z "$$LAKE_TEST_PG" ]; then \
	  echo "test-postgres skipped: no PostgreSQL (LAKE_TEST_PG unset; see scripts/pg_cluster.sh)"; \
	else \
	  LAKE_TEST_CATALOG="$$LAKE_TEST_PG" $(PYTEST) $(PG_TESTS); \
	fi

# The pure tests (no Ray, sandbox, chaos or slow test): well under a minute on 2 cores.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider -m "not slow and not ray and not sandbox and not chaos" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-lake build *.egg-info
