# The two commands: `make demo` (set up + run the main job), `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test durations campaign-smoke lint data setup

$(BIN)/jaxdd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/jaxdd

data:
	sh scripts/install-data.sh

demo: setup data
	$(BIN)/jaxdd demo

# Two worker processes, each test file on one of them (its module fixtures built once),
# longest files first (tests/durations.json): the tests mostly compile small programs,
# one core each.
TEST_WORKERS ?= 2
PYTEST_SPLIT = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: setup data
	$(BIN)/python -m pytest -q $(PYTEST_SPLIT)

# Every part of the GPU campaign at tiny size on this machine (about 6 minutes on 2 cores).
campaign-smoke: setup data
	$(BIN)/python -m benchmarks.gpu_campaign --smoke --out runs/campaign-smoke

# Re-measures tests/durations.json, the order `make test` runs the files in.
durations: setup data
	$(BIN)/python -m pytest -q $(PYTEST_SPLIT) --junitxml=.pytest-report.xml
	$(BIN)/python scripts/test_durations.py .pytest-report.xml && rm .pytest-report.xml

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
