# Each target sets itself up: a .venv with the project and its test extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-sqlite test-postgres test-scale test-scale-suites lint bench clean

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

# The embedded lake and the scaled-out one: a throwaway PostgreSQL (scripts/pg_cluster.sh,
# installed from Debian if missing) and S3 API server (scripts/s3_server.sh, moto) for the whole
# run, a 2-node Ray cluster (scripts/ray_cluster.sh) for the scale-out part; a part whose
# server is missing says why it is skipped.
test: $(STAMP)
	bash scripts/sysdeps.sh
	$(BIN)/ruff check .
	bash scripts/pg_cluster.sh run bash scripts/s3_server.sh run \
	  $(MAKE) --no-print-directory test-sqlite test-postgres test-scale

# A Ray cluster of scripts/ray_cluster.sh is for test-scale only: the other parts use a local Ray.
LOCAL_RAY := env -u LAKE_TEST_RAY -u LAKE_TEST_RAY_DIR -u RAY_AUTH_MODE -u RAY_AUTH_TOKEN_PATH

# Everything on SQLite and local disk (the PostgreSQL and S3 cases of the store and storage
# suites too when LAKE_TEST_PG / LAKE_TEST_S3 are set).
test-sqlite: $(STAMP)
	$(LOCAL_RAY) $(PYTEST) tests

# The catalog, transaction, crash, governance and batch tests with the catalog in PostgreSQL.
test-postgres: $(STAMP)
	@if [ -z "$$LAKE_TEST_PG" ]; then \
	  echo "test-postgres skipped: no PostgreSQL (LAKE_TEST_PG unset; see scripts/pg_cluster.sh)"; \
	else \
	  LAKE_TEST_CATALOG="$$LAKE_TEST_PG" $(LOCAL_RAY) $(PYTEST) $(PG_TESTS); \
	fi

# Scale-out: every lake in S3 with its catalog in PostgreSQL, jobs on a 2-node Ray cluster.
test-scale: $(STAMP)
	@if [ -z "$$LAKE_TEST_PG" ] || [ -z "$$LAKE_TEST_S3" ]; then \
	  echo "test-scale skipped: needs PostgreSQL and an S3 API server (LAKE_TEST_PG, LAKE_TEST_S3)"; \
	else \
	  bash scripts/ray_cluster.sh run $(MAKE) --no-print-directory test-scale-suites; \
	fi

# The catalog, query, crash, governance and batch tests on S3 + PostgreSQL + the cluster, then
# (alone: they kill the worker node) the cluster tests.
test-scale-suites: $(STAMP)
	LAKE_TEST_CATALOG="$$LAKE_TEST_PG" LAKE_TEST_STORAGE=s3 $(PYTEST) $(PG_TESTS) -m "not cluster"
	LAKE_TEST_CATALOG="$$LAKE_TEST_PG" LAKE_TEST_STORAGE=s3 \
	  $(BIN)/python -m pytest -p no:cacheprovider tests/batch/test_cluster.py

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
