# make run: install into .venv and start the robot.
# make test: install, then lint + typecheck + the whole suite (what CI runs; three pytest workers).
# make test-fast: the unit tier only (pytest -m "not slow" on three workers: no loopback servers, no processes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= robot.yaml

.PHONY: install run test test-fast lint typecheck pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "deploy robot needs Python 3.11 or newer (make PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/robot run --config $(CONFIG)

test: lint typecheck pytest

# The unit tier, with a fifth of the property tests' examples: the quick loop while editing.
test-fast: $(STAMP)
	ROBOT_FUZZ_SCALE=0.2 $(BIN)/pytest -n 3 -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check bot handlers tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Three workers (pytest-xdist) on two cores: the slow tests mostly wait on processes, timeouts and
# the fakes, so a third worker fills the waits (measured: 255 s with two, 190 s with three).
pytest: $(STAMP)
	$(BIN)/pytest -n 3

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
