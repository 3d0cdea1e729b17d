# shellcheck shell=bash
# Helpers shared by the scripts in this directory; source it, do not run it.

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# one_at_a_time NAME: hold a machine-wide lock until the calling script ends.
# Two installs at once (make test's stack phase runs its tests side by side;
# two terminals' `make up`) would break each other; the second waits, then
# finds the first's work done.
one_at_a_time() {
  exec 9>"${TMPDIR:-/tmp}/flask-concurrency-$1.lock"
  flock 9
}

# The Debian mirror this machine already uses, so that no registry host is
# written into the repository; deb822 (.sources) and one-line (.list) formats
# both. Only existing files are read: a grep over a missing file exits 2, which
# under pipefail used to abort the calling script. Prints nothing if none.
debian_mirror() {
  local f files=()
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && files+=("$f")
  done
  [ "${#files[@]}" -gt 0 ] || return 0
  awk '$1 == "URIs:" || $1 == "deb" {
         for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\/.*\/debian\/?$/) { print $i; exit }
       }' "${files[@]}"
}

# setting NAME: the variable's value as Compose sees it, the environment
# first, then the project's .env (NAME=VALUE lines, optionally quoted).
# Prints nothing when it is set in neither.
setting() {
  local name=$1 root
  if [ -n "${!name:-}" ]; then
    printf '%s\n' "${!name}"
    return
  fi
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  [ -f "$root/.env" ] || return 0
  sed -n "s/^[[:space:]]*$name=//p" "$root/.env" | tail -n 1 | sed -e "s/^[\"']//" -e "s/[\"']\$//"
}
