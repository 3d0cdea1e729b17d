#!/bin/sh
# Which app replicas nginx sends new requests to: the upstream's servers
# (/tmp/nginx/app-servers.conf, included by conf.d/app.conf), changed without
# dropping a request.
#
#   rotation service        every replica the service name resolves to, as
#                           they come and go (the default): `app`, or
#                           APP_UPSTREAM_HOST (a cluster's headless Service)
#   rotation only NAME...   only these containers, by name: scripts/deploy.sh
#                           keeps a replica out until it is healthy, and takes
#                           one out before it drains
#   rotation reload         the same servers, config re-read (make reload-nginx:
#                           renewed certificates, say)
#   rotation write service  write the file and return (at start, before
#                           nginx: docker-entrypoint.d/25-upstream-servers.sh)
#
# A change is checked with `nginx -t` first (a refused one puts the previous
# file back), applied by a graceful reload, and returns once the workers that
# ran the old config have finished their requests and exited: from then on
# no request goes to a replica left out. nginx Plus would do this through its
# API; open-source nginx has only the reload.
set -eu

servers=/tmp/nginx/app-servers.conf
port=8000
# A replica that fails once is skipped for 10 s (per nginx worker), longer
# than nginx was seen to take to drop a stopped one from the service name:
# about 4 s (Docker drops its record, then the resolver's 2 s cache of the
# answer expires: templates/http.conf.template, docs/operations.md). A
# request in flight when nginx applies such a DNS change cannot be retried
# (its peer list changed under it): with 2 s, one went to the vanished
# address, waited out the connect timeout and got a 504; with max_fails=0
# (tried once) 16 did.
server_options="resolve max_fails=1 fail_timeout=10s"
# Workers that ran the old config may take up to proxy_read_timeout to
# finish a request; a waiter is told when they are still there after this.
old_workers_wait=${ROTATION_WAIT_SECONDS:-60}

die() { echo "rotation: $*" >&2; exit 1; }

write() {
  {
    echo "# Written by rotation ($*); conf.d/app.conf includes it."
    if [ "$1" = service ]; then
      echo "server ${APP_UPSTREAM_HOST:-app}:$port $server_options;"
    else
      shift
      for name in "$@"; do echo "server $name:$port $server_options;"; done
    fi
  } >"$servers.next"
  mv "$servers.next" "$servers"
}

# Process ids of the running nginx workers.
workers() {
  for dir in /proc/[0-9]*; do
    case "$(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null)" in
      "nginx: worker process"*) echo "${dir#/proc/}" ;;
    esac
  done
}

reload() {
  old=$(workers)
  if ! nginx -t -q -e stderr; then
    [ ! -e "$servers.previous" ] || mv "$servers.previous" "$servers"
    die "nginx -t refused the new configuration; nothing changed"
  fi
  # Quiet when it works: nginx notes "signal process started" on stderr.
  out=$(nginx -s reload -e stderr 2>&1) || { echo "$out" >&2; die "nginx -s reload failed"; }
  waited=0
  for pid in $old; do
    while [ -e "/proc/$pid" ]; do
      [ "$waited" -lt $((old_workers_wait * 5)) ] \
        || die "workers with the old configuration still finishing requests after ${old_workers_wait}s"
      sleep 0.2
      waited=$((waited + 1))
    done
  done
}

case "${1:-}" in
  write)
    [ "${2:-}" = service ] || die "usage: rotation write service"
    write service
    exit 0 ;;
  service)
    cp "$servers" "$servers.previous"
    write service
    reload ;;
  only)
    shift
    [ "$#" -gt 0 ] || die "usage: rotation only CONTAINER_NAME..."
    cp "$servers" "$servers.previous"
    write only "$@"
    reload ;;
  reload)
    reload ;;
  *)
    die "usage: rotation service | only CONTAINER_NAME... | reload" ;;
esac
echo "rotation: nginx sends new requests to: $(grep '^server' "$servers" | cut -d' ' -f2 | tr '\n' ' ')"
