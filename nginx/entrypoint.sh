#!/bin/sh
# nginx's settings from the environment, then nginx itself (as PID 1).
#
# Each nginx/templates/*.template is rendered with envsubst, as the official
# image's entrypoint does, but into the /tmp tmpfs: the root filesystem is
# read-only. Only the ${UPPER_CASE} names the templates use are replaced, so
# nginx's own $variables stay. docker-compose.yml sets each of them; a missing
# one stops the start with one line naming it.
set -eu

VARIABLES=$(cat /etc/nginx/templates/*.template | grep -o '\${[A-Z][A-Z0-9_]*}' | tr -d '${}' | sort -u)

for name in $VARIABLES; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "configuration error: $name is not set (docker-compose.yml sets it)" >&2
    exit 2
  fi
done

mkdir -p /tmp/nginx
shell_format=$(printf '${%s} ' $VARIABLES)
for template in /etc/nginx/templates/*.template; do
  envsubst "$shell_format" <"$template" >"/tmp/nginx/$(basename "$template" .template)"
done

exec nginx "$@"
