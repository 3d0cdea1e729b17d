#!/usr/bin/env bash
# Make sure the `kustomize` binary is there (tests/unit/test_kubernetes.py
# renders deploy/kubernetes/ with it), installing it on Debian as root when it
# is not. Idempotent: returns at once when kustomize answers.
#
# Bookworm has no kustomize; a newer suite's package (forky's 5.8.1) is a
# static Go binary that depends on libc6 >= 2.34, which bookworm's satisfies.
# As scripts/ensure-docker.sh does for Compose, that suite is pinned to
# priority 1 so that nothing else is ever taken from it, and only this one
# package is asked for by suite (pkg/suite, never `-t suite`). A dry run
# first: if it would install or upgrade anything but kustomize (a newer libc,
# say), nothing is installed and the script says so.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian's build reports "(devel)": its package version says more.
version() { dpkg-query -W -f '${Version}' kustomize 2>/dev/null || kustomize version; }

if command -v kustomize >/dev/null 2>&1 && kustomize version >/dev/null 2>&1; then
  say "kustomize $(version) is installed"
  exit 0
fi

[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
  || die "kustomize is missing. Install it (https://kubectl.docs.kubernetes.io/installation/kustomize/) and run this again."

suite=${KUSTOMIZE_SUITE:-forky}
# Wait for another apt run instead of failing on its lock.
apt=(apt-get -qq -o DPkg::Lock::Timeout=600)

suite_configured() {
  grep -rqsE "^deb .* $suite( |$)|^Suites:.*\b$suite\b" /etc/apt/sources.list /etc/apt/sources.list.d/
}

if ! suite_configured; then
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "cannot find a Debian mirror in /etc/apt/sources.list*; install kustomize by hand."
  say "adding Debian $suite to apt's sources, pinned to priority 1 (only packages asked for by name/suite come from it)"
  cat >/etc/apt/preferences.d/flask-concurrency-kustomize <<PREF
Package: *
Pin: release n=$suite
Pin-Priority: 1
PREF
  cat >/etc/apt/sources.list.d/flask-concurrency-kustomize.list <<LIST
deb $mirror $suite main
LIST
fi

if ! apt-cache show "kustomize/$suite" >/dev/null 2>&1; then
  say "apt-get update"
  "${apt[@]}" update
fi
apt-cache show "kustomize/$suite" >/dev/null 2>&1 || die "Debian $suite has no kustomize package here; install kustomize by hand."

# The dry run: exactly one package, kustomize, and nothing upgraded or removed.
say "checking what installing kustomize/$suite would change (apt-get install -s)"
plan=$(DEBIAN_FRONTEND=noninteractive apt-get install -s --no-install-recommends "kustomize/$suite" 2>/dev/null)
others=$(printf '%s\n' "$plan" | awk '$1 == "Inst" || $1 == "Remv" {print $2}' | grep -vx kustomize || true)
[ -z "$others" ] || die "installing kustomize from $suite would also change: $(echo "$others" | tr '\n' ' ')- refused; install kustomize by hand."

say "installing kustomize from Debian $suite (that package only)"
DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
  "${apt[@]}" install -y --no-install-recommends "kustomize/$suite" >/dev/null
kustomize version >/dev/null 2>&1 || die "kustomize was installed but 'kustomize version' fails."
say "kustomize $(version) installed"
