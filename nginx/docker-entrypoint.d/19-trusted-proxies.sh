#!/bin/sh
# Run by the official image's entrypoint: /tmp/nginx/real-ip.conf, which
# nginx.conf includes, from TRUSTED_PROXY_HOPS (docker-compose.yml, as the
# app's). A template cannot write it: one hop means no directive at all.
#
# One hop (nginx itself, the default): the peer is the client. More: the peer
# is the proxy in front, and the client is the last address it appended to
# X-Forwarded-For (realip, not recursive: only that proxy is trusted, which
# holds when nothing but it can reach nginx; docs/tls.md).
set -eu

case "${TRUSTED_PROXY_HOPS:-1}" in
  1) echo "# TRUSTED_PROXY_HOPS=1: the peer is the client." >/tmp/nginx/real-ip.conf ;;
  [2-5]) printf '%s\n' "# TRUSTED_PROXY_HOPS=$TRUSTED_PROXY_HOPS: the client as the proxy in front saw it." \
       "real_ip_header X-Forwarded-For;" "set_real_ip_from 0.0.0.0/0;" "set_real_ip_from ::/0;" \
       >/tmp/nginx/real-ip.conf ;;
  *) echo "configuration error: TRUSTED_PROXY_HOPS='$TRUSTED_PROXY_HOPS' is not valid: expected a whole number from 1 to 5" >&2
     exit 2 ;;
esac
