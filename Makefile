# `make run` and `make test`. Everything installs into .venv (VENV=... for another).
#
# make run   installs the gateway's runtime only (pip install -e .) and starts the
#            sandbox and the gateway in front of it (scripts/run.sh).
# make test  adds the dev extra (pytest, ruff, mypy, Playwright, Helm, ...), then runs
#            lint, type-check and the suite. The suite empties (FLUSHDB) the Redis database
#            TEST_REDIS_URL names, or, with TEST_REDIS_URL unset, db 9 of a throwaway
#            redis-server on a free loopback port that it starts and stops itself.
# make docs-check  runs the commands of README.md and docs/ against a fresh stack, and
#            checks the docs' links and names against the code (part of make test too).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: run test docs-check install install-runtime lint redis tools demo bench \
	bench-history clean

$(RUNTIME): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(DEV): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## make install-runtime: the gateway and what it needs to run, nothing else.
install-runtime: $(RUNTIME)

## make install: the runtime plus the dev extra (tests, linters, chart and image tools).
install: $(DEV)

## make run: the sandbox Reusely stand-in and the gateway in front of it (one worker).
run: install-runtime
	@VENV=$(VENV) bash scripts/run.sh

## make test: lint, type-check, and the whole suite against a real Redis and Chromium.
test: install tools lint
	@VENV=$(VENV) bash scripts/test.sh

## make docs-check: every runnable command of the docs, their links, and their names
## (settings, policy keys, metrics, error codes) against the code.
docs-check: install
	@VENV=$(VENV) bash scripts/test.sh -q -p no:cacheprovider tests/integration/test_docs.py \
	  tests/integration/test_docs_names.py

lint: install
	$(BIN)/ruff check gateway tests examples scripts $(wildcard bench)
	$(BIN)/mypy

## make redis: a Redis on 127.0.0.1:6379 for the benchmark (started if none answers).
redis:
	@bash scripts/ensure-redis.sh

tools:
	@bash scripts/ensure-tools.sh

## make demo: the widget page on its own origin (:8090), the gateway (:8080), the sandbox.
demo: install-runtime
	@VENV=$(VENV) bash scripts/demo.sh

## make bench: the load benchmark against nginx and a Python peer (see bench/README.md).
bench: install redis
	@bash bench/run.sh

## make bench-history: each step of this round (git revisions) side by side in one run,
## against nginx; writes bench/HISTORY.md, about 8 minutes. A subset, shorter:
## make bench-history HISTORY_ARGS='--only "round one,now" --rounds 1 --seconds 2'
bench-history: install redis
	@PATH="$$PATH:/usr/sbin" $(PYTHON) bench/history.py $(HISTORY_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
