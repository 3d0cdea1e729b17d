#!/usr/bin/env bash
# Before the app starts (make up, make dev) or before a new release of it
# does (make deploy, from the new image): with a database configured, the
# connection budget checked against the server's own limit, then the
# pending migrations applied with the app's own `flask db upgrade`
# (serving/migrate.py), once, each in a one-off container of the app
# image: not per replica, not per worker (docs/database.md). The bundled
# database (COMPOSE_PROFILES=db) is started and waited for first. Without a
# database, both steps say so and do nothing. Either refusing stops the
# caller with the one line it printed; nothing running has changed.
#
#   scripts/prepare-database.sh [REPLICAS]   (default: APP_REPLICAS, or 2)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
compose() { "$here/compose" "$@"; }

replicas=${1:-$(setting APP_REPLICAS)}
replicas=${replicas:-2}

# grep reads it all: -q would close the pipe early, and pipefail take that for a failure.
if compose config --services | grep -x db >/dev/null; then
  say "starting the bundled database (COMPOSE_PROFILES=db) and waiting until it is healthy"
  compose up -d --wait --wait-timeout 120 db
fi
say "checking the database's connection budget for $replicas replica(s), then applying its pending migrations"
# Both in one container: each start of the app image costs about a second,
# on every make up and make deploy. The migrations run only if the budget holds.
compose run --rm --no-deps -T app \
  sh -c 'python3 -m serving.budget --replicas "$1" && python3 -m serving.migrate' prepare-database "$replicas" \
  | sed 's/^/    /'
