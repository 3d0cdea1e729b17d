#!/usr/bin/env bash
# make swarm-up / make swarm-down: the product as a Docker Swarm stack
# (docs/scaling.md), on the swarm this engine belongs to. Never creates or
# leaves a swarm.
#
#   swarm.sh up    build, name the images by content, push them if
#                  IMAGE_PREFIX names a registry, deploy (or update) the stack,
#                  wait until every service has converged and is healthy
#   swarm.sh down  remove the stack and wait until it is gone
#
# The stack is named like the Compose project (COMPOSE_PROJECT_NAME, default
# flask-concurrency); its file is generated from docker-compose.yml and
# deploy/swarm/compose.swarm.yml by scripts/swarm-stack.py.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
compose() { "$root/scripts/compose" "$@"; }

stack=${COMPOSE_PROJECT_NAME:-flask-concurrency}
# Bounds a deploy: start-first updates of two tasks, each watched 20 s.
converge_timeout=240

in_swarm() {
  [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ] \
    || die "this Docker engine is in no swarm. Create one with \`docker swarm init --advertise-addr <this host's address>\`, or join one with the command \`docker swarm join-token worker\` prints on a manager (docs/scaling.md); then run this again."
  [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] \
    || die "this node is a swarm worker: deploy from a manager."
}

# tagged SERVICE: the built image, named by its content (so that every new
# build is an update Swarm sees), under IMAGE_PREFIX (a registry) if set.
tagged() {
  local built id name
  built=$(compose config --format json | python3 -c "import json,sys; print(json.load(sys.stdin)['services']['$1']['image'])")
  id=$(docker image inspect -f '{{.Id}}' "$built" | cut -d: -f2 | cut -c1-12)
  name="${IMAGE_PREFIX:-}${built%%:*}:$id"
  docker tag "$built" "$name"
  if [ -n "${IMAGE_PREFIX:-}" ]; then
    say "pushing $name"
    docker push --quiet "$name" >/dev/null
  fi
  echo "$name"
}

services() { docker stack services "$stack" --format '{{.Name}}' 2>/dev/null; }

# converged: every service at its replica count, no update in progress.
# Exits 1 with the reason when an update was rolled back or paused.
# update_started SERVICE: when its latest update started ("" if none).
update_started() { docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}' "$1" 2>/dev/null || true; }
declare -A before

converged() {
  local service state message desired healthy running
  for service in $(services); do
    state=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$service")
    # A rollback from an earlier deploy is not this one's.
    [ "$(update_started "$service")" != "${before[$service]:-}" ] || state=""
    message=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.Message}}{{end}}' "$service")
    case "$state" in
      rollback_completed) die "$service: the update was rolled back ($message); the previous version is serving" ;;
      paused | rollback_paused) die "$service: the update is $state ($message)" ;;
      updating | rollback_started) return 1 ;;
    esac
    desired=$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' "$service")
    # As many healthy containers as tasks wanted, and no other still running
    # (an old task draining, a new one starting).
    healthy=$(docker ps -q --filter "label=com.docker.swarm.service.name=$service" --filter health=healthy | wc -l)
    running=$(docker ps -q --filter "label=com.docker.swarm.service.name=$service" | wc -l)
    [ "$healthy" = "$desired" ] && [ "$running" = "$desired" ] || return 1
  done
}

# The database's connection budget (serving/budget.py) against the server
# DATABASE_URL names, from a one-off container of the app image on Docker's
# default network, which has a route out (the stack's backend has none).
# The bundled database is Compose's, never the swarm's: no DATABASE_URL, no
# database, nothing to check.
budget() {
  local url replicas name args=()
  url=$(setting DATABASE_URL)
  [ -n "$url" ] || { say "no DATABASE_URL: no database, no connection budget to check"; return 0; }
  replicas=$(setting APP_REPLICAS)
  # The app as its workers load it (APP_MODULE), and what sizes and checks
  # its pools (serving/pools.py).
  for name in APP_MODULE WORKER_CLASS WEB_CONCURRENCY GUNICORN_THREADS GUNICORN_WORKER_CONNECTIONS GUNICORN_TIMEOUT \
              DATABASE_POOL_SIZE DATABASE_POOL_TIMEOUT DATABASE_RESERVED_CONNECTIONS DATABASE_CONNECT_TIMEOUT \
              DATABASE_URL; do
    [ -z "$(setting "$name")" ] || args+=(-e "$name=$(setting "$name")")
  done
  say "checking the database's connection budget for ${replicas:-2} replica(s)"
  docker run --rm --read-only --tmpfs /tmp "${args[@]}" \
    -e DATABASE_PASSWORD_FILE=/run/secrets/db_password -e SECRET_KEY_FILE=/run/secrets/secret_key \
    -v "$root/secrets/db_password:/run/secrets/db_password:ro" -v "$root/secrets/secret_key:/run/secrets/secret_key:ro" \
    "$(compose config --images app | head -n 1)" python3 -m serving.budget --replicas "${replicas:-2}" | sed 's/^/    /'
}

up() {
  in_swarm
  say "building the images"
  compose build
  # The settings, checked in a throwaway project: a Compose network named
  # like the stack's would stand in the way of its overlay network.
  local check="$stack-settings-check"
  { COMPOSE_PROJECT_NAME=$check compose run --rm --no-deps -T app python3 -m serving.check >/dev/null \
      && COMPOSE_PROJECT_NAME=$check compose run --rm --no-deps -T nginx nginx -t -q -e stderr; } \
    || { COMPOSE_PROJECT_NAME=$check compose down --volumes >/dev/null 2>&1; exit 2; }
  # --volumes: the throwaway project's (its empty static volume), never the stack's.
  COMPOSE_PROJECT_NAME=$check compose down --volumes >/dev/null 2>&1
  budget
  local app nginx file
  app=$(tagged app)
  nginx=$(tagged nginx)
  mkdir -p "$root/.cache"
  file="$root/.cache/swarm-stack-$stack.json"
  COMPOSE_FILE="${COMPOSE_FILE:-docker-compose.yml}:deploy/swarm/compose.swarm.yml" compose config --format json \
    | python3 "$root/scripts/swarm-stack.py" "$app" "$nginx" >"$file"
  local service
  for service in $(services); do before[$service]=$(update_started "$service"); done
  say "deploying stack $stack ($app, $nginx)"
  docker stack deploy --prune --resolve-image never -c "$file" "$stack" | sed 's/^/    /'
  say "waiting until every service has converged and is healthy (at most ${converge_timeout}s)"
  local deadline=$((SECONDS + converge_timeout))
  sleep 2
  until converged; do
    [ "$SECONDS" -lt "$deadline" ] || die "the stack did not converge within ${converge_timeout}s: docker stack ps $stack"
    sleep 2
  done
  docker stack services "$stack" --format '    {{.Name}} {{.Replicas}} {{.Image}}'
  echo "Serving on http://127.0.0.1:$(setting HTTP_PORT | grep . || echo 8080)/ (published on every address of this node)"
}

down() {
  docker stack rm "$stack" >/dev/null 2>&1 || true
  say "waiting until stack $stack is gone"
  local deadline=$((SECONDS + 60))
  while [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")$(docker network ls -q --filter "label=com.docker.stack.namespace=$stack")" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "stack $stack still has containers or networks after 60s"
    sleep 1
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: swarm.sh up|down" ;;
esac
