# callbridge: two commands matter.
#   make serve  - create .venv, install, run the platform with embedded defaults
#   make test   - create .venv, install, start the test services, run every gate
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test venv lint typecheck pytest services bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,speech]'
	@touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/callbridge serve $(ARGS)

services:
	bash scripts/ensure-services.sh
	bash scripts/ensure-test-packages.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest -p no:cacheprovider --cov --cov-branch --cov-report= $(ARGS)
	@echo "== branch coverage of the protocol and media cores"
	$(BIN)/coverage report --skip-empty --include='src/callbridge/media/*,src/callbridge/sip/*,src/callbridge/rtp/*,src/callbridge/rtvbp/*,src/callbridge/h2b/*'
	@echo "== branch coverage, whole package"
	$(BIN)/coverage report --skip-empty | grep -E '^TOTAL'

test: $(STAMP) services lint typecheck pytest

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .coverage .pytest_cache .mypy_cache .ruff_cache var
