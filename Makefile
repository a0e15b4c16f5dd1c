# The two commands: `make demo` (set up + run the main job), `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint data setup

$(BIN)/jaxdd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/jaxdd

data:
	sh scripts/install-data.sh

demo: setup data
	$(BIN)/jaxdd demo

# Two worker processes, each test file on one of them (its module fixtures built once):
# the tests mostly compile small programs, one core each.
TEST_WORKERS ?= 2
test: setup data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
