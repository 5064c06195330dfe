# The two commands the README opens with, and the gates CI runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test test-unit lint demo stack-up stack-down env images down format

# `scripts/testenv test`: unit tests, then the real-engine tests in STACKSUP_TEST_WORKERS
# parallel workers (default 4), then the ones marked engine_exclusive alone.
test: lint       ## quality gates, then everything against the real engine/registry/databases
	scripts/testenv test

test-unit:       ## only what needs no engine
	scripts/testenv install
	$(PY) -m pytest -m unit

lint:            ## ruff (lint + format check) and mypy --strict
	scripts/testenv install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict supervisor tests/support

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

env:             ## engine + registry up, images built (left running)
	scripts/testenv up
	scripts/testenv images

down:
	scripts/testenv down

demo:            ## the main job: demo stack, update 1.0.0 -> 1.1.0, failed 1.3.0 rolled back
	scripts/demo

stack-up:        ## the demo stack left running (sidecar API on 127.0.0.1:8080); prints the token files
	scripts/demo up

stack-down:      ## remove the demo stack, its volumes and its files
	scripts/demo down
