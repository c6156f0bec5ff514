# The two commands of the README: `make demo` and `make test`. Each one creates or
# updates .venv itself, so a fresh clone needs nothing else.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_TELEMETRY_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: venv demo test lint typecheck check clean sim sim-thingspace

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing fleetwave and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[dev]'; } \
		> $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(BIN)/python -m fleetwave.demo

# The suite runs in parallel (pytest-xdist), one test file per worker at a time so that
# module-scoped simulators stay shared; PYTEST_ARGS come last (PYTEST_ARGS="-n 0": serial).
PYTEST_PARALLEL ?= -n auto --dist loadfile

test: $(STAMP)
	@$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: $(STAMP)
	@$(BIN)/mypy

check: lint typecheck test

sim: $(STAMP)
	@$(BIN)/fleetwave sim serve --devices 10000 --seed 1

sim-thingspace: $(STAMP)
	@$(BIN)/fleetwave sim serve --platform thingspace --devices 10000 --seed 1

clean:
	rm -rf $(VENV) .fleetwave .pytest_cache .mypy_cache .ruff_cache
