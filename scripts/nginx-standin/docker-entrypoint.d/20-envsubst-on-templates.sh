#!/bin/sh
# The local nginx stand-in's template step, run by /docker-entrypoint.sh, as
# the official image's of the same name: every file under
# NGINX_ENVSUBST_TEMPLATE_DIR whose name ends in NGINX_ENVSUBST_TEMPLATE_SUFFIX
# is written, suffix dropped, to the same relative path under
# NGINX_ENVSUBST_OUTPUT_DIR, with envsubst replacing the environment's
# variables whose names match NGINX_ENVSUBST_FILTER (an awk regular
# expression; every name when empty). Like the official step it does nothing
# when there is no template directory, and only says so when the output
# directory is not writable (the project's own hook creates it first).
set -eu

templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}

say() { [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$0: $*"; }

[ -d "$templates" ] || exit 0
if [ ! -w "$out" ]; then
  say "$out is not writable: the templates in $templates are not rendered"
  exit 0
fi

# envsubst's list: `${NAME} ...`, the names the filter admits.
names=$(awk -v filter="${NGINX_ENVSUBST_FILTER:-}" \
  'BEGIN { for (name in ENVIRON) if (name ~ filter) printf "${%s} ", name }')

find -L "$templates" -type f -name "*$suffix" | while IFS= read -r template; do
  target=$out/${template#"$templates"/}
  target=${target%"$suffix"}
  mkdir -p "$(dirname "$target")"
  envsubst "$names" <"$template" >"$target"
  say "rendered $template into $target"
done
