#!/bin/sh
# Run by the official image's entrypoint: /tmp/nginx/real-ip.conf, which
# nginx.conf includes, from TRUSTED_PROXY_HOPS and TRUSTED_PROXY_ADDRESSES
# (docker-compose.yml). A template cannot write it: one directive per address.
#
# One hop (nginx itself, the default): the peer is the client, whatever it
# sends. More: the proxies in front are named, by address or CIDR, and only a
# request whose peer is one of them has its client taken from
# X-Forwarded-For (the last address that proxy appended; with 3 hops or more,
# walking back over every named proxy of the chain) and its scheme and host
# from X-Forwarded-Proto and -Host ($from_trusted_proxy, read by nginx.conf).
# Any other peer is limited, logged and seen by the app under its own
# address, whatever it sends: a port published by mistake or a second path in
# cannot choose its address. A bad value stops the start with one line.
set -eu

out=/tmp/nginx/real-ip.conf
hops=${TRUSTED_PROXY_HOPS:-1}
addresses=$(printf '%s' "${TRUSTED_PROXY_ADDRESSES:-}" | tr ',' ' ')

fail() { echo "configuration error: $*" >&2; exit 2; }

# An IPv4 or IPv6 address, optionally a CIDR; nginx -t checks the rest.
valid_address() {
  case "$1" in
    */*) mask=${1#*/}; ip=${1%/*} ;;
    *) mask=; ip=$1 ;;
  esac
  case "$mask" in
    "" | [0-9] | [0-9][0-9] | 1[01][0-9] | 12[0-8]) ;;
    *) return 1 ;;
  esac
  case "$ip" in
    *:*) printf '%s' "$ip" | grep -Eq '^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$' ;;
    *) printf '%s' "$ip" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}$' \
         && printf '%s' "$ip" | tr '.' '\n' | awk '$1 > 255 { bad = 1 } END { exit bad }' \
         && [ "${mask:-0}" -le 32 ] ;;
  esac
}

case "$hops" in
  1)
    [ -z "$addresses" ] || fail "TRUSTED_PROXY_ADDRESSES='$TRUSTED_PROXY_ADDRESSES' is set but TRUSTED_PROXY_HOPS=1 trusts no proxy in front of nginx: set TRUSTED_PROXY_HOPS=2 (or more), or unset it"
    printf '%s\n' "# TRUSTED_PROXY_HOPS=1: the peer is the client." \
      'geo $realip_remote_addr $from_trusted_proxy { default 0; }' >"$out"
    exit 0 ;;
  [2-5]) ;;
  *) fail "TRUSTED_PROXY_HOPS='$hops' is not valid: expected a whole number from 1 to 5" ;;
esac

[ -n "$addresses" ] || fail "TRUSTED_PROXY_ADDRESSES is not set: with TRUSTED_PROXY_HOPS=$hops, name the proxies in front of nginx (addresses or CIDRs, comma-separated); docs/tls.md"
for address in $addresses; do
  valid_address "$address" || fail "TRUSTED_PROXY_ADDRESSES='$TRUSTED_PROXY_ADDRESSES' is not valid: '$address' is not an IPv4 or IPv6 address or CIDR"
done

recursive=off
[ "$hops" -lt 3 ] || recursive=on
{
  echo "# TRUSTED_PROXY_HOPS=$hops: the client as the named proxies in front saw it."
  echo "real_ip_header X-Forwarded-For;"
  echo "real_ip_recursive $recursive;"
  for address in $addresses; do echo "set_real_ip_from $address;"; done
  echo 'geo $realip_remote_addr $from_trusted_proxy {'
  echo "    default 0;"
  for address in $addresses; do echo "    $address 1;"; done
  echo "}"
} >"$out"
