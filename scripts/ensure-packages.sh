#!/usr/bin/env bash
# Make sure some commands are there, installing their Debian packages when
# they are not: ensure-packages.sh COMMAND[:PACKAGE] ... (the package defaults
# to the command's name). Idempotent: returns at once when all are present.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
for spec in "$@"; do
  command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
done
[ "${#missing[@]}" -gt 0 ] || exit 0

[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
  || die "missing: ${missing[*]}; install these packages and run this again."
say "installing ${missing[*]}"
# Wait for another apt run instead of failing on its lock.
apt=(apt-get -qq -o DPkg::Lock::Timeout=600)
apt-cache show "${missing[@]}" >/dev/null 2>&1 || "${apt[@]}" update
DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
