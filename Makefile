# Two commands for a newcomer: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The dashboard's JavaScript is checked with Node's tools when Node is installed (CI has it);
# without it those steps say so and are skipped, as the service itself needs no Node.
NPM := $(shell command -v npm 2>/dev/null)
NODE_STAMP := node_modules/.installed-stamp

.PHONY: install demo test lint lint-js test-js typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: install
	$(BIN)/reconciler demo

lint: install lint-js
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

ifdef NPM
lint-js: $(NODE_STAMP)
	npm run --silent lint

test-js: $(NODE_STAMP)
	npm test --silent
else
lint-js test-js:
	@echo "npm not found: skipping the dashboard's JavaScript checks (install Node.js 20+ to run them)"
endif

typecheck: install
	$(BIN)/mypy

test: lint typecheck test-js
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
