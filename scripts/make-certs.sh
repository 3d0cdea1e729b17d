#!/usr/bin/env bash
# `make certs`: a local CA and a certificate for localhost, 127.0.0.1 and ::1
# in certs/ (git-ignored), made by mkcert. The CA stays in certs/ca/: it is
# never added to this machine's trust store (that would be `mkcert -install`,
# yours to run if you want browsers to trust it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
certs=$(cd "$here/.." && pwd)/certs

"$here/ensure-packages.sh" mkcert
mkdir -p "$certs/ca"
# -cert-file and -key-file never touch a trust store; CAROOT keeps the CA here.
CAROOT="$certs/ca" TRUST_STORES=none mkcert -cert-file "$certs/localhost.pem" -key-file "$certs/localhost-key.pem" \
  localhost 127.0.0.1 ::1 2>&1 | grep -v '^$' | sed 's/^/    /' >&2
# nginx reads the key as its own user (uid 101) through a read-only mount.
if [ "$(id -u)" = 0 ]; then
  chgrp 101 "$certs/localhost-key.pem" && chmod 0640 "$certs/localhost-key.pem"
else
  chmod 0644 "$certs/localhost-key.pem"  # a local certificate, readable by the container's user
fi

cat <<MSG
Certificate for localhost, 127.0.0.1 and ::1, signed by a local CA (not installed anywhere):
  certs/localhost.pem, certs/localhost-key.pem
Serve HTTPS with them: put these two lines in .env (or export them), then run make up:
  TLS_CERT_FILE=certs/localhost.pem
  TLS_KEY_FILE=certs/localhost-key.pem
Clients verify against the CA: certs/ca/rootCA.pem
  curl --cacert certs/ca/rootCA.pem https://127.0.0.1:\${HTTPS_PORT:-8443}/
MSG
