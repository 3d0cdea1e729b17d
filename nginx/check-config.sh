#!/bin/sh
# Build-time check of the config (`RUN nginx-check`): the official
# entrypoint's hooks, as at start, with placeholder values for the settings
# (docker-compose.yml sets the real ones at start), then `nginx -t`, in the
# plain-HTTP mode (no certificate in an image); leaves nothing behind in /tmp.
set -eu
NGINX_PROXY_READ_TIMEOUT=1s SERVER_NAMES=localhost NGINX_RATE_LIMIT=1r/s NGINX_RATE_BURST=1 \
  NGINX_CONNECTIONS_PER_CLIENT=1 HSTS_MAX_AGE=1 HTTPS_PORT=1 CONTENT_SECURITY_POLICY="default-src 'none'" \
  /docker-entrypoint.sh nginx -t -q -e stderr
rm -rf /tmp/nginx /tmp/nginx.pid
