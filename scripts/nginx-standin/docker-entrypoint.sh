#!/bin/sh
# The local nginx stand-in's entrypoint (scripts/ensure-base-images.sh), the
# part of the official image's interface this project uses: when the command
# is nginx, every hook in /docker-entrypoint.d/ in version order (`sort -V`),
# a *.envsh sourced (what it exports reaches the later hooks) and a *.sh run,
# each only if executable; a failing hook stops the start. Then the command
# replaces this shell (nginx as PID 1). NGINX_ENTRYPOINT_QUIET_LOGS silences
# the progress lines.
set -e

say() { [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$0: $*"; }

case "${1:-}" in
  nginx | nginx-debug)
    hooks=$(find -L /docker-entrypoint.d -mindepth 1 -maxdepth 1 -type f 2>/dev/null | sort -V)
    while IFS= read -r hook; do
      case "$hook" in
        "") ;;
        *.envsh | *.sh)
          if [ ! -x "$hook" ]; then
            say "ignoring $hook: not executable"
          elif [ "${hook%.envsh}" != "$hook" ]; then
            say "sourcing $hook"
            # shellcheck disable=SC1090 # the hooks are the image's, found at run time
            . "$hook"
          else
            say "running $hook"
            "$hook"
          fi ;;
        *) say "ignoring $hook" ;;
      esac
    done <<HOOKS
$hooks
HOOKS
    say "configuration complete; starting $1" ;;
esac

exec "$@"
