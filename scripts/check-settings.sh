#!/usr/bin/env bash
# The settings Compose itself reads (replicas, limits, ports, profiles),
# checked before Compose sees them: Compose would stop with its own words
# ("'services[app].mem_limit' invalid size", "Invalid hostPort: 99999"),
# naming a key of the model, never the variable. A bad value stops with one
# line naming the variable, its value and what is expected. scripts/compose
# runs it before every Compose command of make's.
#
# The other settings are checked where they are read, by the program that
# reads them, so that Swarm and Kubernetes check them too: nginx's by its
# image's entrypoint (nginx/docker-entrypoint.d/), the server's and the
# app's by `python3 -m serving.check` (make check), the certificate by
# scripts/check-tls.sh. An unset variable takes docker-compose.yml's default.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

refuse() {
  printf "configuration error: %s='%s' is not valid: expected %s\n" "$1" "$2" "$3" >&2
  exit 2
}

# A whole number from LOW to HIGH (no sign, no leading zeros beyond one digit).
whole_between() {
  [[ $1 =~ ^(0|[1-9][0-9]{0,8})$ ]] && ((10#$1 >= $2 && 10#$1 <= $3))
}

# The project's Compose profiles: those its compose files declare.
profiles() {
  grep -rhoE '^ *profiles: *(!override *)?\[[^]]*\]' "$root/docker-compose.yml" "$root"/*/compose.yml 2>/dev/null \
    | sed -E 's/.*\[(.*)\]/\1/' | tr ',' '\n' | tr -d ' ' | sort -u
}

check() {
  local name=$1 kind=$2 value
  value=$(setting "$name")
  [ -n "$value" ] || return 0
  case "$kind" in
    replicas) whole_between "$value" 1 16 || refuse "$name" "$value" "a whole number from 1 to 16" ;;
    port) whole_between "$value" 1 65535 || refuse "$name" "$value" "a port from 1 to 65535" ;;
    pids) whole_between "$value" 8 4194304 || refuse "$name" "$value" "a whole number of processes from 8 to 4194304" ;;
    shares) whole_between "$value" 2 262144 || refuse "$name" "$value" "a CPU weight from 2 to 262144 (1024 is Docker's default)" ;;
    cpus)
      [[ $value =~ ^[0-9]{1,3}(\.[0-9]{1,2})?$ ]] \
        || refuse "$name" "$value" "a number of CPUs such as 2 or 0.5 (0: no limit)" ;;
    memory)
      # At least Docker's minimum of 6 MiB; a plain number is bytes, which
      # nobody means: a unit is required.
      [[ $value =~ ^([0-9]{1,6})([kKmMgG])[bB]?$ ]] \
        && { case ${BASH_REMATCH[2]} in k | K) ((BASH_REMATCH[1] >= 6144)) ;; m | M) ((BASH_REMATCH[1] >= 6)) ;; *) ((BASH_REMATCH[1] >= 1)) ;; esac } \
        || refuse "$name" "$value" "a size with its unit, at least 6m, such as 512m or 1g" ;;
    duration)
      [[ $value =~ ^[1-9][0-9]{0,5}(ms|s|m|h|d|w|y)$ ]] \
        || refuse "$name" "$value" "a duration such as 15d, 12h or 2w" ;;
    profiles)
      local profile known
      known=$(profiles | paste -sd ' ')
      for profile in ${value//,/ }; do
        grep -qxF -- "$profile" <(profiles) \
          || refuse "$name" "$value" "profiles of this project, comma-separated: $known"
      done ;;
    *) die "check-settings.sh: no kind $kind" ;;
  esac
}

check APP_REPLICAS replicas
check APP_CPUS cpus
check APP_CPU_SHARES shares
check APP_MEMORY memory
check APP_PIDS pids
check NGINX_CPUS cpus
check NGINX_CPU_SHARES shares
check NGINX_MEMORY memory
check NGINX_PIDS pids
check DB_MEMORY memory
check DB_PIDS pids
check HTTP_PORT port
check HTTPS_PORT port
check PROMETHEUS_PORT port
check PROMETHEUS_MEMORY memory
check PROMETHEUS_RETENTION duration
check LOADTEST_UI_PORT port
check COMPOSE_PROFILES profiles
