#!/usr/bin/env bash
# Before anything starts: are TLS_CERT_FILE and TLS_KEY_FILE usable? Neither
# set is fine (plain HTTP). Otherwise both must be set, readable (by nginx's
# user too), the certificate in date, and the key its own. The first problem
# stops the start with one line naming the variable; nothing running is
# touched. openssl does the reading.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
cd "$here/.."

bad() { printf 'configuration error: %s\n' "$*" >&2; exit 2; }

cert=$(setting TLS_CERT_FILE)
key=$(setting TLS_KEY_FILE)
[ -n "$cert$key" ] || exit 0
[ -n "$cert" ] || bad "TLS_CERT_FILE is not set, but TLS_KEY_FILE is: set both (HTTPS) or neither (plain HTTP)"
[ -n "$key" ] || bad "TLS_KEY_FILE is not set, but TLS_CERT_FILE is: set both (HTTPS) or neither (plain HTTP)"

"$here/ensure-packages.sh" openssl

# readable_by UID GID FILE: whether the file's own mode lets that user read it
# (the mount is made by Docker as root, so the directories above do not matter).
readable_by() {
  local uid=$1 gid=$2 owner group mode
  read -r owner group mode < <(stat -c '%u %g %a' "$3")
  mode=$((8#$mode))
  { [ "$owner" = "$uid" ] && (( mode & 0400 )); } || { [ "$group" = "$gid" ] && (( mode & 0040 )); } || (( mode & 0004 ))
}

# nginx runs as uid and gid 101 (the official unprivileged image's user).
for var in TLS_CERT_FILE TLS_KEY_FILE; do
  if [ "$var" = TLS_CERT_FILE ]; then file=$cert; else file=$key; fi
  [ -f "$file" ] || bad "$var=$file: no such file"
  [ -r "$file" ] || bad "$var=$file cannot be read"
  readable_by 101 101 "$file" \
    || bad "$var=$file cannot be read by nginx's user (uid 101): chgrp 101 and chmod 640 it"
done
openssl x509 -in "$cert" -noout 2>/dev/null || bad "TLS_CERT_FILE=$cert is not a PEM certificate"
openssl pkey -in "$key" -noout 2>/dev/null || bad "TLS_KEY_FILE=$key is not a PEM private key"
openssl x509 -in "$cert" -noout -checkend 0 >/dev/null \
  || bad "TLS_CERT_FILE=$cert expired on $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)"
[ "$(openssl x509 -in "$cert" -noout -pubkey)" = "$(openssl pkey -in "$key" -pubout)" ] \
  || bad "TLS_KEY_FILE=$key does not match the certificate in TLS_CERT_FILE=$cert"
say "TLS: $cert (until $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)), key $key"
