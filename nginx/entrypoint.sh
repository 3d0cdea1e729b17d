#!/bin/sh
# nginx's settings from the environment, then nginx itself (as PID 1).
#
# The mode: https when a certificate is mounted (compose.tls.yml), http
# otherwise. Its files (nginx/modes/MODE/) and nginx/templates/ are copied
# into the /tmp tmpfs, each *.template rendered with envsubst as the official
# image's entrypoint does (the root filesystem is read-only). Only the
# ${UPPER_CASE} names those files use are replaced, so nginx's own $variables
# stay. docker-compose.yml sets each of them; a missing one stops the start
# with one line naming it.
set -eu

if [ -e /etc/nginx/tls/cert.pem ]; then mode=https; else mode=http; fi
sources="/etc/nginx/templates/* /etc/nginx/modes/$mode/*"

VARIABLES=$(cat $sources | grep -o '\${[A-Z][A-Z0-9_]*}' | tr -d '${}' | sort -u)

for name in $VARIABLES; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "configuration error: $name is not set (docker-compose.yml sets it)" >&2
    exit 2
  fi
done

mkdir -p /tmp/nginx
shell_format=$(printf '${%s} ' $VARIABLES)
for source in $sources; do
  envsubst "$shell_format" <"$source" >"/tmp/nginx/$(basename "$source" .template)"
done

# One hop (nginx itself, the default): the peer is the client. More: the peer
# is the proxy in front, and the client is the last address it appended to
# X-Forwarded-For (realip, not recursive: only that proxy is trusted, which
# holds when nothing but it can reach nginx; docs/tls.md).
case "${TRUSTED_PROXY_HOPS:-1}" in
  1) echo "# TRUSTED_PROXY_HOPS=1: the peer is the client." >/tmp/nginx/real-ip.conf ;;
  [2-5]) printf '%s\n' "# TRUSTED_PROXY_HOPS=$TRUSTED_PROXY_HOPS: the client as the proxy in front saw it." \
       "real_ip_header X-Forwarded-For;" "set_real_ip_from 0.0.0.0/0;" "set_real_ip_from ::/0;" \
       >/tmp/nginx/real-ip.conf ;;
  *) echo "configuration error: TRUSTED_PROXY_HOPS='$TRUSTED_PROXY_HOPS' is not valid: expected a whole number from 1 to 5" >&2
     exit 2 ;;
esac

# The resolver: NGINX_RESOLVER, or the first nameserver the container was
# given (Docker's embedded DNS, or a cluster's).
resolver=${NGINX_RESOLVER:-$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf 2>/dev/null || true)}
case "$resolver" in
  "") echo "configuration error: NGINX_RESOLVER is not set and /etc/resolv.conf names no nameserver" >&2
      exit 2 ;;
  *:*) resolver="[$resolver]" ;;
esac
echo "resolver $resolver valid=2s ipv6=off;" >/tmp/nginx/resolver.conf

# The upstream's servers: the service name, every replica (nginx/rotation.sh).
rotation write service

exec nginx "$@"
