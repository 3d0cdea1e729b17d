#!/usr/bin/env bash
# Make sure a Docker engine and the Compose v2 plugin answer, installing and
# starting them on Debian/Ubuntu (as root) when they do not. Idempotent: a
# machine that already has both returns at once.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}

# `docker version` asks the engine for its version only; `docker info` would
# gather everything about it (0.1 to 0.4 s), before every Compose command.
engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
compose_answers() { docker compose version >/dev/null 2>&1; }

if engine_answers && compose_answers; then
  exit 0
fi
one_at_a_time ensure-docker
if engine_answers && compose_answers; then
  exit 0  # installed by the run we waited for
fi

can_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
}

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
}

if ! command -v dockerd >/dev/null 2>&1; then
  can_install || die "no Docker engine found. Install Docker Engine (https://docs.docker.com/engine/install/) with the Compose v2 plugin, start it, and run this again."
  apt_update
  say "installing the distribution's Docker engine (docker.io)"
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq docker.io >/dev/null
fi

if ! compose_answers; then
  can_install || die "'docker compose' (Compose v2 plugin) is missing. Install docker-compose-plugin and run this again."
  apt_update
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose-plugin >/dev/null 2>&1 \
     || ! compose_answers; then
    # Debian bookworm ships only Compose v1. A newer suite's docker-compose
    # package is Compose v2 as a CLI plugin and depends on nothing newer than
    # bookworm's libc. That suite is pinned to priority 1 so that nothing else
    # is ever taken from it, and only this one package is asked for by
    # suite (pkg/suite, never `-t suite`, which would raise the whole suite)
    # without its recommends (a newer docker-cli that drags in a newer libc).
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "cannot find a Debian mirror in /etc/apt/sources.list*; install the Compose v2 plugin by hand."
    suite=${COMPOSE_SUITE:-forky}
    say "installing Compose v2 (docker-compose from Debian $suite, that package only)"
    cat >/etc/apt/sources.list.d/flask-concurrency-compose.list <<LIST
deb $mirror $suite main
LIST
    cat >/etc/apt/preferences.d/flask-concurrency-compose <<PREF
Package: *
Pin: release n=$suite
Pin-Priority: 1
PREF
    apt_updated=0
    apt_update
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
      apt-get install -y -qq --no-install-recommends "docker-compose/$suite" >/dev/null
  fi
  compose_answers || die "'docker compose version' still fails after installing the plugin."
fi

if ! engine_answers; then
  if pgrep -x dockerd >/dev/null 2>&1; then
    say "dockerd is running but not answering yet; waiting"
  else
    [ "$(id -u)" = 0 ] || die "the Docker engine is installed but not running; start it (e.g. 'sudo systemctl start docker')."
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
      systemctl start docker
    else
      setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
  fi
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 1
  done
  engine_answers || die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
fi

say "Docker engine $(docker version --format '{{.Server.Version}}') with $(docker compose version --short | sed 's/^/Compose /')"
