#!/usr/bin/env bash
# gixy on the nginx config as it ships, in both of its modes: `nginx -T` in
# the nginx image, run as Compose runs it (the command is nginx, so the
# image's entrypoint runs its hooks and renders the templates first), dumps
# every file nginx loads (the base image's, and those written at start). As
# configured first (plain HTTP unless TLS_* are set), then HTTPS with a
# throwaway certificate (trustme, from the test venv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$root/.venv}
compose=$root/scripts/compose

"$compose" --progress quiet build nginx >/dev/null

echo "==> nginx -T (as configured) | gixy -"
"$compose" --progress quiet run --rm --no-deps -T nginx nginx -T -e stderr | "$venv/bin/gixy" -

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" - "$tmp" <<'PY'
import sys, trustme
leaf = trustme.CA().issue_cert("localhost")
leaf.cert_chain_pems[0].write_to_path(f"{sys.argv[1]}/cert.pem")
leaf.private_key_pem.write_to_path(f"{sys.argv[1]}/key.pem")
PY
chmod 0644 "$tmp"/*.pem
echo "==> nginx -T (HTTPS, compose.tls.yml) | gixy -"
TLS_CERT_FILE=$tmp/cert.pem TLS_KEY_FILE=$tmp/key.pem HTTPS_PORT=8443 \
  "$compose" --progress quiet run --rm --no-deps -T nginx nginx -T -e stderr | "$venv/bin/gixy" -
