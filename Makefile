# Every target runs docker compose through scripts/compose, which first makes
# sure a Docker engine, the Compose plugin and the base images are there.
# Variables (WORKER_CLASS, WEB_CONCURRENCY, HTTP_PORT, ...) come from the
# environment or .env: `WORKER_CLASS=gevent make up`. See .env.example.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

COMPOSE := scripts/compose
VENV := .venv
PYTHON := $(VENV)/bin/python
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-m unit"`.
PYTEST_ARGS ?=

.PHONY: help up down logs ps config test test-unit lint lock

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## Build the images, start nginx -> gunicorn -> Flask, wait until healthy
	@$(COMPOSE) --profile '*' build
	@# Fails fast, naming the variable, when a setting is invalid.
	@$(COMPOSE) run --rm --no-deps -T app python3 -m app.settings >/dev/null
	@$(COMPOSE) up -d --wait --wait-timeout 120 --remove-orphans
	@echo "Serving on http://$$($(COMPOSE) port nginx 8080 2>/dev/null)/"
	@echo "gunicorn's effective configuration:"
	@$(COMPOSE) logs --no-log-prefix app 2>/dev/null | grep '"event": "gunicorn.config"' | tail -n 1

down: ## Stop and remove the stack's containers and networks
	@$(COMPOSE) --profile '*' down --remove-orphans

logs: ## Follow the stack's logs
	@$(COMPOSE) logs -f --tail=100

ps: ## Show the stack's containers and their health
	@$(COMPOSE) ps

config: ## Print the settings gunicorn would start with (JSON), or the error
	@$(COMPOSE) --progress quiet build app >/dev/null
	@$(COMPOSE) run --rm --no-deps -T app python3 -m app.settings

$(VENV)/.installed: requirements/test.txt
	@echo "==> creating $(VENV) with the test dependencies (requirements/test.txt)"
	@python3 -m venv $(VENV)
	@$(PYTHON) -m pip install -q --disable-pip-version-check --require-hashes -r requirements/test.txt
	@touch $@

test: $(VENV)/.installed ## Run every test: unit, then integration against real stacks
	@scripts/ensure-docker.sh
	@$(PYTHON) -m pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed ## Run the fast unit tests only (no Docker)
	@$(PYTHON) -m pytest -m unit $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff on the Python, Compose's own check of the compose file
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(COMPOSE) config --quiet

lock: $(VENV)/.installed ## Re-pin requirements/*.txt (with hashes) from requirements/*.in
	@$(PYTHON) -m pip install -q uv
	@$(VENV)/bin/uv pip compile -q --universal --python-version 3.13 --generate-hashes \
	    --custom-compile-command 'make lock' requirements/app.in -o requirements/app.txt
	@$(VENV)/bin/uv pip compile -q --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command 'make lock' requirements/test.in -o requirements/test.txt
