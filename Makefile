# Each target sets itself up: a .venv with the project and its test extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

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

test: $(STAMP)
	bash scripts/sysdeps.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -p no:cacheprovider tests

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
