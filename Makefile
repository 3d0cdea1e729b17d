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

.PHONY: help images check up dev monitor db-delete-data static-prune swarm-up swarm-down certs deploy reload-app reload-nginx down logs ps config test test-unit lint lock kubernetes-budget

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## Build the images, start nginx -> gunicorn -> Flask, wait until healthy
	@# TLS_CERT_FILE and TLS_KEY_FILE, if set: both, readable, in date, matching.
	@scripts/check-tls.sh
	@$(MAKE) --no-print-directory images
	@$(MAKE) --no-print-directory check
	@scripts/prepare-database.sh
	@$(COMPOSE) up -d --wait --wait-timeout 120 --remove-orphans
	@echo "Serving on http://$$($(COMPOSE) port nginx 8080 2>/dev/null)/"
	@if [ -n "$$($(COMPOSE) port nginx 8443 2>/dev/null)" ]; then \
	  echo "HTTPS on https://$$($(COMPOSE) port nginx 8443)/ (plain HTTP redirects there)"; fi
	@scripts/effective-config.sh

# The product's images, and the load test's: built here with the base images
# scripts/compose resolved (local stand-ins where no registry answers), so
# that a plain `docker compose run loadtest` finds its image and builds
# nothing. The load test is never started here.
images:
	@$(COMPOSE) build
	@if [ -d loadtest ]; then $(COMPOSE) --profile loadtest build loadtest; fi

# Every setting checked before anything running changes: a bad value stops
# the start with one line naming it, its value and what is expected. The
# certificate's; Compose's own (scripts/check-settings.sh, which
# scripts/compose runs first); then, in throwaway containers of the new
# images, the server's and the app's (and that it loads), then nginx's (its
# entrypoint's hooks and templates, then `nginx -t`).
check:
	@scripts/check-tls.sh
	@$(COMPOSE) run --rm --no-deps -T app python3 -m serving.check >/dev/null
	@$(COMPOSE) run --rm --no-deps -T nginx nginx -t -q -e stderr

# The development overlay (compose.dev.yml): app/ bind-mounted, gunicorn --reload.
dev: export COMPOSE_FILE = docker-compose.yml:compose.dev.yml
dev: ## Like up, but serving ./app as it is edited (gunicorn --reload; never Werkzeug's server)
	@scripts/check-tls.sh
	@$(MAKE) --no-print-directory images
	@$(MAKE) --no-print-directory check
	@scripts/prepare-database.sh 1
	@$(COMPOSE) up -d --wait --wait-timeout 120 --remove-orphans
	@echo "Serving ./app with reload on http://$$($(COMPOSE) port nginx 8080 2>/dev/null)/ (make logs follows it)"

# $(call with_profile,NAME): the profiles set in the shell or .env, plus NAME
# (the bundled database's `db` stays on with `make monitor`).
comma := ,
space := $(eval) $(eval)
with_profile = $(subst $(space),$(comma),$(strip $(filter-out $(1),$(subst $(comma), ,$(shell bash -c '. scripts/lib.sh; setting COMPOSE_PROFILES'))) $(1)))

# The monitoring overlay's profile (monitoring/compose.yml): Prometheus and
# nginx's exporter beside the stack.
monitor: export COMPOSE_PROFILES = $(call with_profile,monitoring)
monitor: ## Like up, with Prometheus scraping every replica and nginx (PROMETHEUS_PORT, default 9090)
	@$(MAKE) --no-print-directory up
	@echo "Prometheus on http://$$($(COMPOSE) port prometheus 9090)/ (targets: /targets, alerts: /alerts)"

swarm-up: ## Deploy or update the stack on this engine's swarm, wait until healthy (docs/scaling.md)
	@scripts/swarm.sh up

swarm-down: ## Remove the Swarm stack
	@scripts/swarm.sh down

certs: ## Make a local CA and a certificate for localhost in certs/ (mkcert; never installed in a trust store)
	@scripts/make-certs.sh

deploy: ## Roll the app onto a fresh build, APP_REPLICAS of it, failing no request (docs/operations.md)
	@scripts/check-tls.sh
	@scripts/deploy.sh
	@scripts/effective-config.sh

# From inside each container: `docker kill --signal HUP` would do the same,
# but Docker then counts the container as stopped by hand, and an
# `unless-stopped` one is never restarted after a crash (moby/moby#41302).
reload-app: ## HUP every replica's gunicorn: new workers, then the old ones drain (no failed request)
	@for id in $$($(COMPOSE) ps -q --status running app); do 	  docker exec "$$id" sh -c 'kill -HUP 1' && echo "gunicorn reloaded in $$(docker inspect -f '{{.Name}}' "$$id" | cut -c2-)"; 	done

reload-nginx: ## Check nginx's config, then reload it gracefully (renewed certificates, say)
	@$(COMPOSE) exec -T nginx rotation reload

down: ## Stop and remove the stack's containers and networks (the database's data volume stays)
	@$(COMPOSE) --profile '*' down --remove-orphans

static-prune: ## Remove the static files no recent release names (KEEP=2 releases; docs/static.md)
	@$(COMPOSE) exec -T app python3 -m serving.static prune --keep $(or $(KEEP),2)

db-delete-data: ## Delete the bundled database's data (the db-data volume): CONFIRM=yes
	@if [ "$(CONFIRM)" != yes ]; then \
	  echo "This deletes every row of the bundled database (the volume $$($(COMPOSE) config --volumes | grep -x db-data) of this project)."; \
	  echo "Run: make db-delete-data CONFIRM=yes"; exit 2; fi
	@$(COMPOSE) --profile '*' rm -fsv db >/dev/null
	@docker volume rm "$$($(COMPOSE) config --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["volumes"]["db-data"]["name"])')"
	@echo "deleted the database's data"

logs: ## Follow the stack's logs
	@$(COMPOSE) logs -f --tail=100

ps: ## Show the stack's containers and their health
	@$(COMPOSE) ps

config: ## Print the settings gunicorn would start with (JSON), or the error
	@$(COMPOSE) --progress quiet build app >/dev/null
	@$(COMPOSE) run --rm --no-deps -T app python3 -m serving.check

# One venv for the tests and the linters, both locks in one pip run: pip
# refuses them should they ever pin a package they share differently.
$(VENV)/.installed: requirements/test.txt requirements/lint.txt
	@echo "==> creating $(VENV) with the test and lint dependencies (requirements/test.txt, requirements/lint.txt)"
	@python3 -m venv $(VENV)
	@$(PYTHON) -m pip install -q --disable-pip-version-check --require-hashes \
	    -r requirements/test.txt -r requirements/lint.txt
	@touch $@

# The Docker engine is made ready by the first test that needs it
# (harness/stack.py), after the unit layer: on a fresh machine its install
# would otherwise delay a unit failure by minutes.
#
# Four phases, a pytest each, stopping after the first that fails
# (tests/conftest.py's PHASES): Swarm, in the background beside the tests
# without Docker (its swarm left before any other stack starts: leaving
# breaks the DNS of containers running then, not of later ones; its output
# after theirs); the stack tests, TEST_WORKERS modules at once, since they
# mostly wait on containers; the timing tests, alone.
TEST_WORKERS ?= 2
test: $(VENV)/.installed lint ## Run every check: lint, then the layers cheapest first, stopping after one that fails
	@scripts/ensure-kustomize.sh
	@mkdir -p .cache
	@echo "==> make test: the tests without Docker, and Swarm beside them (its output follows theirs)"
	@$(PYTHON) -m pytest --phase swarm $(PYTEST_ARGS) >.cache/test-swarm.log 2>&1 & swarm=$$!; \
	  $(PYTHON) -m pytest --phase unit $(PYTEST_ARGS); unit=$$?; \
	  wait $$swarm; swarm=$$?; echo "==> make test: Swarm"; cat .cache/test-swarm.log; \
	  [ $$unit -eq 0 ] && [ $$swarm -eq 0 ]
	@echo "==> make test: the stack tests, $(TEST_WORKERS) modules at once"
	@$(PYTHON) -m pytest --phase stacks -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	@echo "==> make test: the timing tests, alone"
	@$(PYTHON) -m pytest --phase timing $(PYTEST_ARGS)

test-unit: $(VENV)/.installed ## Run the fast unit tests only (no Docker)
	@scripts/ensure-kustomize.sh
	@$(PYTHON) -m pytest -m unit $(PYTEST_ARGS)

# The database connections each Kubernetes overlay may open at its most (the
# autoscaler's maximum plus a rollout's surge), read from the rendered
# manifests, against MAX_CONNECTIONS (PostgreSQL's default, 100): one line
# each; an overlay over it fails (docs/database.md). tests/unit runs it too.
kubernetes-budget: $(VENV)/.installed ## The database connection budget of every Kubernetes overlay (MAX_CONNECTIONS=100)
	@scripts/ensure-kustomize.sh >/dev/null
	@$(PYTHON) scripts/kubernetes-budget.py --max-connections $(or $(MAX_CONNECTIONS),100) \
	    $(notdir $(wildcard deploy/kubernetes/overlays/*))

# gixy reads the nginx config as it ships, with and without TLS
# (scripts/lint-nginx.sh).
lint: $(VENV)/.installed ## ruff, hadolint (Dockerfiles), shellcheck, gixy (nginx), check-jsonschema (.github), compose config
	@echo "==> ruff check ."
	@$(VENV)/bin/ruff check .
	@echo "==> ruff format --check ."
	@$(VENV)/bin/ruff format --check .
	@files=$$(git ls-files '*Dockerfile*'); echo "==> hadolint" $$files; \
	  $(VENV)/bin/hadolint $$files
	@files=$$(git ls-files 'scripts/*' 'nginx/*.sh' 'nginx/*.envsh' '.ci/run' | grep -v '\.py$$'); echo "==> shellcheck" $$files; \
	  $(VENV)/bin/shellcheck --severity=warning --external-sources $$files
	@VENV=$(VENV) scripts/lint-nginx.sh
	@echo "==> check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml"
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	@echo "==> check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml"
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	@# The files alone: neither the engine's base images (minutes to build on a
	@# fresh machine, before the unit tests) nor anyone's .env are needed.
	@echo "==> docker compose config --quiet"
	@scripts/ensure-docker.sh
	@env -u COMPOSE_FILE -u COMPOSE_PROFILES docker compose --project-directory . --env-file /dev/null config --quiet

# Each lock's header names the exact command that wrote it, run from the
# repository's root (uv writes it, leaving out -q), so that Renovate,
# Dependabot or a person can re-run it without make. Pins already in a lock
# are kept: no --upgrade. Python 3.13 is the images'; 3.11, the oldest the
# host's .venv may have (pyproject.toml's requires-python).
UV_COMPILE := $(VENV)/bin/uv pip compile -q --universal --generate-hashes
lock: $(VENV)/.installed ## Re-pin requirements/*.txt, loadtest/ and bench/loadgen/ requirements.txt (with hashes) from the .in files
	@$(PYTHON) -m pip install -q uv
	@$(UV_COMPILE) --python-version=3.13 requirements/app.in --output-file=requirements/app.txt
	@$(UV_COMPILE) --python-version=3.11 requirements/test.in --output-file=requirements/test.txt
	@# After test.txt, whose pins lint.in takes for the packages they share.
	@$(UV_COMPILE) --python-version=3.11 requirements/lint.in --output-file=requirements/lint.txt
	@$(UV_COMPILE) --python-version=3.13 loadtest/requirements.in --output-file=loadtest/requirements.txt
	@$(UV_COMPILE) --python-version=3.13 requirements/bench.in --output-file=requirements/bench.txt
	@$(UV_COMPILE) --python-version=3.13 bench/loadgen/requirements.in --output-file=bench/loadgen/requirements.txt
	@# checkov, in a venv of its own (tests/unit/test_kubernetes.py): it pins packaging below pytest's.
	@$(UV_COMPILE) --python-version=3.11 requirements/policy.in --output-file=requirements/policy.txt

# --- load testing (docs/loadtest.md) -------------------------------------------
# Thresholds, users and run time: LOADTEST_* and LOCUST_* (see .env.example),
# e.g. `LOCUST_USERS=50 LOCUST_RUN_TIME=20s make loadtest`.

.PHONY: loadtest loadtest-ui loadtest-reports

# Where the reports go; loadtest/compose.yml reads the same variable. Absolute,
# because Compose resolves a relative one against loadtest/.
LOADTEST_REPORTS_DIR := $(abspath $(or $(LOADTEST_REPORTS_DIR),loadtest/reports))
export LOADTEST_REPORTS_DIR

loadtest: ## Load-test the stack headless (30 s), print the summary, exit 1 if a threshold fails
	@$(MAKE) --no-print-directory loadtest-reports
	@# Starts the stack if it is down; a running one is left exactly as it is
	@# (no `up`, which would recreate a container whose settings differ from
	@# this shell's, or scale the app back): the test measures the stack.
	@[ -n "$$($(COMPOSE) ps -q --status running nginx)" ] || $(MAKE) --no-print-directory up
	@# Distributed mode (LOCUST_WORKERS=N): the workers first; they find their
	@# master by its service name (--use-aliases) and stop with it.
	@rc=0; \
	  if [ "$${LOCUST_WORKERS:-0}" != 0 ]; then \
	    $(COMPOSE) --profile loadtest up -d --no-deps loadtest-worker || rc=$$?; fi; \
	  [ $$rc != 0 ] || $(COMPOSE) run --rm --no-deps --use-aliases loadtest || rc=$$?; \
	  $(COMPOSE) --profile loadtest rm -fsv loadtest-worker >/dev/null 2>&1 || true; \
	  exit $$rc

loadtest-ui: ## Serve locust's web UI on http://127.0.0.1:8089 (LOADTEST_UI_PORT); Ctrl-C stops it
	@$(MAKE) --no-print-directory loadtest-reports
	@echo "locust's web UI: http://127.0.0.1:$${LOADTEST_UI_PORT:-8089}/ (Ctrl-C stops it)"
	@[ -n "$$($(COMPOSE) ps -q --status running nginx)" ] || $(MAKE) --no-print-directory up
	@$(COMPOSE) run --rm --no-deps --service-ports loadtest-ui

# The reports directory, made by you before Docker would make it as root for
# the bind mount: the container takes its owner's uid, so the reports are
# yours (loadtest/entrypoint.py).
loadtest-reports:
	@mkdir -p $(LOADTEST_REPORTS_DIR)

# --- the concurrency lab (docs/benchmarks/README.md) ---------------------------
# Every serving configuration measured side by side, in containers
# (bench/compose.yml). The full mode (about 20 minutes, as results.json's
# meta.elapsed_s records) rewrites the figures in docs/benchmarks/, and only
# from a tree with no uncommitted changes (the figures name the commit
# measured); QUICK=1 is CI's short check of the lab itself and writes to
# .cache/bench-quick/. BENCH_ARGS passes more options
# (`.venv/bin/python -m bench --help`), e.g. BENCH_ARGS="--configs apache":
# a run of some configurations (keys, families or fronts; each brings the
# ones its ratios pair with) merges its figures beside the earlier ones of
# the same profile (--replace: write only its own).

.PHONY: bench

QUICK ?=
BENCH_ARGS ?=

bench: $(VENV)/.installed ## Measure every serving configuration, write docs/benchmarks/ (QUICK=1: CI's short mode)
	@scripts/ensure-docker.sh
	@$(PYTHON) -m bench $(if $(filter 1 yes true,$(QUICK)),--quick) $(BENCH_ARGS)

# make tune (docs/tuning.md): your locustfile's load against candidate worker
# classes, workers, threads and pools, sized from the app container's CPU
# quota and the database's connection budget; prints the .env lines to apply
# and writes .cache/tune/ (tune.md, tune.json, tune.png). TUNE_* variables
# set it (printed at the start, with their defaults); QUICK=1: CI's short mode.
.PHONY: tune

tune: $(VENV)/.installed ## Recommend WORKER_CLASS, workers, threads and pool from your locustfile's load (docs/tuning.md)
	@scripts/ensure-docker.sh
	@$(PYTHON) -m bench.tune $(if $(filter 1 yes true,$(QUICK)),--quick)
