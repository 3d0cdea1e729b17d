#!/usr/bin/env bash
# The stack's secrets (Compose `secrets:`, docker-compose.yml), in secrets/,
# which git ignores: Flask's SECRET_KEY and the database's password. Each is
# made on first use, random, and then never overwritten: deleting
# secrets/db_password does not change the password of a database already
# initialised in its volume (docs/database.md). They reach the containers as
# files under /run/secrets/, never as environment variables or in an image.
# An empty file is left as it is, for the app to refuse, naming it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

one_at_a_time ensure-secrets
dir="$here/../secrets"
mkdir -p "$dir"
# The directory keeps other users of this host out; the files themselves are
# bind-mounted into containers whose users (10001, postgres's 999) read them.
chmod 700 "$dir"
for name in secret_key db_password; do
  file="$dir/$name"
  [ -e "$file" ] && continue
  (umask 022 && head -c 64 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48 >"$file.new" && mv "$file.new" "$file")
  say "generated secrets/$name, random; kept from now on, never overwritten"
done
