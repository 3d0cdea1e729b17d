#!/usr/bin/env bash
# make deploy: the app's replicas rolled onto a freshly built image, their
# number set to APP_REPLICAS, without failing a request (docs/operations.md).
#
# The steps are docker-rollout's (github.com/wowu/docker-rollout: start the
# new containers beside the old, wait until healthy, stop the old), written
# out because it is packaged nowhere this project installs from. What it
# adds: nginx's rotation (nginx/rotation.sh) is switched at each step, so no
# request reaches a replica that is not healthy yet or is already draining.
#   1. build the image and check its settings (a bad one: one line naming it);
#      with a database, check the connection budget and apply the pending
#      migrations from the new image, once (a failing one: one line naming
#      its revision, and the old replicas keep serving);
#   2. nginx sends only to the replicas serving now;
#   3. APP_REPLICAS new ones start beside them. One that exits, restarts or
#      is not healthy in time is removed, the old ones keep serving, and this
#      exits 1 with its last log lines;
#   4. nginx sends only to the new ones, once no nginx worker sends to the old;
#   5. the old ones get SIGTERM (gunicorn finishes their requests in flight
#      within its graceful timeout) and are removed;
#   6. nginx back to the service name: every replica, as they come and go.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
compose() { "$root/scripts/compose" "$@"; }

# scripts/compose has checked it.
replicas=$(setting APP_REPLICAS)
replicas=${replicas:-2}
# The Dockerfile's HEALTHCHECK (every 5 s, 20 s start period) reports a good
# replica healthy within seconds; this bounds a replica that never gets there.
health_timeout=120

nginx=$(compose ps -q --status running nginx)
[ -n "$nginx" ] || die "the stack is not running: start it with make up, then deploy"
# One deploy at a time per stack: the lock is its Compose project's, so that
# two stacks run from one checkout (COMPOSE_PROJECT_NAME) deploy independently.
project=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$nginx")
mkdir -p "$root/.cache"
exec 9>"$root/.cache/deploy-$project.lock"
flock -n 9 || die "another deploy of $project is running"

name_of() { docker inspect -f '{{.Name}}' "$@" | sed 's,^/,,'; }
rotation() { docker exec "$nginx" rotation "$@" | sed 's/^/    /'; }

mapfile -t old < <(compose ps -a -q app)
mapfile -t serving < <(compose ps -q --status running app)

say "building the app image"
compose build app
say "checking its settings and that the app loads"
compose run --rm --no-deps -T app python3 -m serving.check >/dev/null \
  || die "deploy refused: the new image does not start (above); nothing changed"
"$root/scripts/prepare-database.sh" "$replicas" \
  || die "deploy refused: the database's budget or migrations (above); the replicas serving now are unchanged"

# From here on, whatever happens, nginx ends up on the service name again.
trap 'rotation service >/dev/null || true' EXIT
if [ "${#serving[@]}" -gt 0 ]; then
  say "nginx keeps to the ${#serving[@]} replica(s) serving now"
  mapfile -t names < <(name_of "${serving[@]}")
  rotation only "${names[@]}"
fi

say "starting $replicas new replica(s) beside them"
compose up -d --no-deps --no-recreate --scale "app=$(( ${#old[@]} + replicas ))" app
new=()
for id in $(compose ps -a -q app); do
  [[ " ${old[*]} " == *" $id "* ]] || new+=("$id")
done
[ "${#new[@]}" -eq "$replicas" ] || die "expected $replicas new replicas, Compose started ${#new[@]}"

# health ID: healthy, waiting, or the reason it never will be.
health() {
  local status restarts check
  read -r status restarts check < <(docker inspect -f \
    '{{.State.Status}} {{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1")
  if [ "$restarts" != 0 ]; then echo "exited, and was restarted $restarts time(s)"
  elif [ "$status" != running ]; then echo "exited (state $status)"
  elif [ "$check" = unhealthy ]; then echo "failed its health check"
  elif [ "$check" = healthy ]; then echo healthy
  else echo waiting; fi
}

refuse() {
  local id=$1 reason=$2 name logs cause
  name=$(name_of "$id")
  logs=$(docker logs "$id" 2>&1)
  say "$name: $reason; its last log lines:"
  tail -n 20 <<<"$logs" | sed 's/^/    /' >&2
  # The exception or configuration error that stopped it, if it logged one:
  # the last line of a traceback, in a plain line or in a JSON log's
  # "traceback" field (where it ends at the escaped quote or newline).
  cause=$(grep -oE '(^|\\n)[A-Za-z_.]*(Error|Exception): [^"\\]*' <<<"$logs" | tail -n 1 || true)
  cause=${cause#\\n}
  say "removing the new replica(s); the ${#serving[@]} serving before keep serving"
  docker rm -f "${new[@]}" >/dev/null
  rotation service
  trap - EXIT
  die "deploy refused: $name $reason${cause:+ ($cause)}"
}

say "waiting until they are healthy (at most ${health_timeout}s)"
deadline=$((SECONDS + health_timeout))
for id in "${new[@]}"; do
  while state=$(health "$id"); [ "$state" != healthy ]; do
    [ "$state" = waiting ] || refuse "$id" "$state"
    [ "$SECONDS" -lt "$deadline" ] || refuse "$id" "was not healthy within ${health_timeout}s"
    sleep 1
  done
done

say "nginx sends new requests to the new replica(s) only"
mapfile -t names < <(name_of "${new[@]}")
rotation only "${names[@]}"

if [ "${#old[@]}" -gt 0 ]; then
  say "draining and removing the ${#old[@]} old replica(s)"
  # docker stop waits the stop_grace_period docker-compose.yml gives them.
  docker stop "${old[@]}" >/dev/null
  docker rm "${old[@]}" >/dev/null
fi

say "nginx back to the service name"
rotation service
trap - EXIT
say "deployed: $replicas replica(s) of $(docker inspect -f '{{.Image}}' "${new[0]}" | cut -c1-19)"
