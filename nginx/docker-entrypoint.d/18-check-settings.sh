#!/bin/sh
# Run by the official image's entrypoint before its template step
# (20-envsubst-on-templates.sh), which would leave an unset variable's
# ${NAME} in the config as it is, and skip every template, silently, when its
# output directory does not exist.
#
# Every ${NAME} that the templates nginx reads at this start use (all but the
# other mode's) must be set and not empty; docker-compose.yml sets each. A
# missing one stops the start with one line naming it. Only the names
# NGINX_ENVSUBST_FILTER admits are replaced (so nginx's own $variables stay):
# a template's name the filter leaves out is the image's mistake, and says so.
# Then the output directory, on the /tmp tmpfs (the root filesystem is
# read-only).
set -eu

templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}

# shellcheck disable=SC2016 # ${NAME} as the templates write it, not this shell's
placeholder='\${[A-Z][A-Z0-9_]*}'
names=$(find -L "$templates" -type f -name "*$suffix" \
          \( ! -path "$templates/modes/*" -o -path "$templates/modes/${NGINX_SITE_MODE:-}/*" \) -exec cat {} + \
        | grep -o "$placeholder" | tr -d "\${}" | sort -u)

for name in $names; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    case "$name" in
      NGINX_LOCAL_RESOLVERS) why="/etc/resolv.conf names no nameserver; docs/scaling.md says how to set it" ;;
      NGINX_SITE_MODE) why="17-site-mode.envsh sets it" ;;
      *) why="docker-compose.yml sets it" ;;
    esac
    echo "configuration error: $name is not set ($why)" >&2
    exit 2
  fi
  if ! awk -v name="$name" -v filter="${NGINX_ENVSUBST_FILTER:-}" 'BEGIN { exit !(name ~ filter) }'; then
    echo "configuration error: $name is used by a template but NGINX_ENVSUBST_FILTER leaves it out (nginx/Dockerfile)" >&2
    exit 2
  fi
done

# The values docker-compose.yml takes from the user, each in the form its
# directive reads: nginx -t would name the directive, or nothing at all (a
# max-age nginx sends as written), never the variable.
whole() { case "$1" in "" | *[!0-9]*) return 1 ;; esac; [ "${#1}" -le 9 ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
refuse() { echo "configuration error: $1='$2' is not valid: expected $3" >&2; exit 2; }
for name in $names; do
  eval "value=\${$name:-}"
  case "$name" in
    NGINX_RATE_LIMIT)
      printf '%s' "$value" | grep -Eq '^[1-9][0-9]{0,8}r/[sm]$' \
        || refuse "$name" "$value" "requests per second or minute, such as 1000r/s or 60r/m" ;;
    NGINX_RATE_BURST)
      whole "$value" 0 1000000 || refuse "$name" "$value" "a whole number from 0 to 1000000" ;;
    NGINX_CONNECTIONS_PER_CLIENT)
      whole "$value" 1 1000000 || refuse "$name" "$value" "a whole number from 1 to 1000000" ;;
    HSTS_MAX_AGE)
      whole "$value" 0 999999999 || refuse "$name" "$value" "a whole number of seconds (63072000 is two years)" ;;
    HTTPS_PORT)
      whole "$value" 1 65535 || refuse "$name" "$value" "a port from 1 to 65535" ;;
    SERVER_NAMES)
      # Host names, wildcards (*.example.com) or nginx's ~regular expressions
      # (the lab's ~^nginx(-[a-z-]+)?$), blank-separated: anything that could
      # end nginx's directive, start a block or quote is refused.
      name_re='([A-Za-z0-9.*_:-]+|~[^[:space:];{}"\\]+)'
      printf '%s' "$value" | grep -Eq "^$name_re( +$name_re)*\$" \
        || refuse "$name" "$value" "host names separated by blanks, such as example.com www.example.com" ;;
  esac
done

mkdir -p "${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
