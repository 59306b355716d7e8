# Two commands for a newcomer: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The dashboard's JavaScript is checked with Node's tools when Node is installed (CI has it);
# without it those steps say so and are skipped, as the service itself needs no Node.
NPM := $(shell command -v npm 2>/dev/null)
NODE_STAMP := node_modules/.installed-stamp


# Bump when the recipe below changes: a .venv made by an older Makefile is then rebuilt.
VENV_RECIPE := 2
RECIPE_FILE := $(VENV)/.makefile-recipe

# `version_of PY` prints PY's MAJOR.MINOR, or nothing when PY does not run; `is_supported V`
# succeeds for 3.11 and newer. Plain shell, so no Python has to run before we know it is a good one.
define version_shell
version_of() { "$$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null | tail -n 1; }; \
is_supported() { major=$${1%%.*}; minor=$${1#*.}; \
  [ -n "$$1" ] && [ "$$major" -eq "$$major" ] 2>/dev/null && [ "$$minor" -eq "$$minor" ] 2>/dev/null && \
  { [ "$$major" -gt 3 ] || { [ "$$major" -eq 3 ] && [ "$$minor" -ge 11 ]; }; }; }
endef

# Stops with the advice when $(PYTHON) is missing or older than 3.11.
define check_python
$(version_shell); \
found=$$(version_of "$(PYTHON)"); \
if ! is_supported "$$found"; then \
  if [ -z "$$found" ]; then what="'$(PYTHON)' was not found or does not run"; \
  else what="'$(PYTHON)' is Python $$found"; fi; \
  echo "stellar-reconciler needs Python 3.11 or newer, and $$what." >&2; \
  echo "Choose one on the command line, for example: make PYTHON=python3.11 $(or $(MAKECMDGOALS),install)" >&2; \
  exit 2; \
fi
endef

.PHONY: install check-python demo test lint lint-js test-js typecheck unit bench clean

# A .venv with a Python that no longer runs or is too old, or one left by an older Makefile, is
# removed and built again instead of failing every later command.
install:
	@$(version_shell); \
	if [ -e "$(VENV)" ]; then \
	  found=$$(version_of "$(BIN)/python"); reason=""; \
	  if [ -z "$$found" ]; then reason="its Python does not run"; \
	  elif ! is_supported "$$found"; then reason="it was made with Python $$found"; \
	  elif [ "$$(cat "$(RECIPE_FILE)" 2>/dev/null)" != "$(VENV_RECIPE)" ]; then \
	    reason="an older Makefile made it"; fi; \
	  if [ -n "$$reason" ]; then \
	    $(check_python); \
	    echo "Rebuilding $(VENV): $$reason."; rm -rf "$(VENV)"; fi; \
	fi
	@$(MAKE) --no-print-directory $(STAMP) MAKECMDGOALS='$(or $(MAKECMDGOALS),install)'

check-python:
	@$(check_python)

$(STAMP): pyproject.toml
	@$(check_python)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	echo $(VENV_RECIPE) > $(RECIPE_FILE)
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: install
	$(BIN)/reconciler demo

lint: install lint-js
	$(BIN)/ruff check src tests bench deploy examples
	$(BIN)/ruff format --check src tests bench deploy examples

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
