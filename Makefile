# The two commands: `make run` and `make test`. Everything installs into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint redis tools demo bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make run: the sandbox Reusely stand-in and the gateway in front of it, in-memory limits.
run: install
	@bash scripts/run.sh

## make test: lint, type-check, and the whole suite against a real Redis and Chromium.
test: install redis tools lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check gateway tests examples $(wildcard bench)
	$(BIN)/mypy

redis:
	@bash scripts/ensure-redis.sh

tools:
	@bash scripts/ensure-tools.sh

## make demo: the widget page on its own origin (:8090), the gateway (:8080), the sandbox.
demo: install
	@bash scripts/demo.sh

## make bench: the load benchmark against nginx and a Python peer (see bench/README.md).
bench: install redis
	@bash bench/run.sh

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
