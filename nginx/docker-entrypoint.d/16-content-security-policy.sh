#!/bin/sh
# Run by the official image's entrypoint before 18-check-settings.sh and the
# template step: CONTENT_SECURITY_POLICY, the policy nginx adds to an answer
# that carries none of its own (templates/http.conf.template writes it into a
# double-quoted nginx string; docs/security.md). A value nginx or a browser
# would read otherwise than written stops the start with one line naming it:
# - nothing but blanks: no policy at all, which is not what anyone means to
#   send (unset is 18-check-settings.sh's "is not set", as for every setting);
# - a double quote or a backslash ends or escapes nginx's string; a dollar
#   sign starts one of nginx's variables; a newline, another control
#   character or a byte outside ASCII cannot be in a header value;
# - a part between semicolons that does not start with a directive's name
#   ('self' alone, a bare URL): browsers ignore it, and the policy silently
#   protects less than it reads;
# - a keyword without its single quotes (script-src self): browsers take it
#   for a host name, so 'self' is not allowed at all.
set -eu

[ "${CONTENT_SECURITY_POLICY+set}" = set ] || exit 0
value=$CONTENT_SECURITY_POLICY

expected="expected directives separated by ';' on one line, such as default-src 'none'; script-src 'self' (docs/security.md)"

# The value as one line of printable ASCII: a newline shown as \n, any other
# control character or non-ASCII byte as ?. The X keeps a trailing newline.
shown=$(printf '%sX' "$value" | LC_ALL=C awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { gsub(/[^ -~]/, "?"); print }')
shown=${shown%X}

# printf, not echo: dash's echo would turn a \n in the value back into a newline.
refuse() {
  printf "configuration error: CONTENT_SECURITY_POLICY='%s' is not valid: %s; %s\n" "$shown" "$1" "$expected" >&2
  exit 2
}

newline='
'
case "$value" in
  *"$newline"*) refuse "it holds a newline" ;;
  *'"'*) refuse "it holds a double quote, which would end nginx's string" ;;
  *\\*) refuse "it holds a backslash, which nginx reads as an escape" ;;
  *'$'*) refuse "it holds a dollar sign, which nginx reads as a variable" ;;
esac
if printf '%s' "$value" | LC_ALL=C grep -q '[^ -~]'; then
  refuse "it holds a control character or a byte outside ASCII"
fi

# Each part between semicolons: its first word is the directive's name, the
# rest its values. Prints the first problem found, or nothing.
problem=$(printf '%s' "$value" | awk 'BEGIN { RS = ";" }
  {
    n = split($0, word, " ")
    if (n == 0) next
    directives++
    if (word[1] !~ /^[A-Za-z][A-Za-z0-9-]*$/) {
      part = $0
      gsub(/^ +| +$/, "", part)
      printf "'\''%s'\'' does not start with a directive'\''s name", part
      exit
    }
    for (i = 2; i <= n; i++) {
      if (word[i] ~ /^(self|none|unsafe-inline|unsafe-eval|unsafe-hashes|strict-dynamic|report-sample|wasm-unsafe-eval)$/ \
          || word[i] ~ /^(sha256|sha384|sha512|nonce)-/) {
        printf "%s in %s needs its single quotes ('\''%s'\''), or browsers read it as a host name", word[i], word[1], word[i]
        exit
      }
    }
  }
  END { if (!directives) printf "it names no directive" }')
[ -z "$problem" ] || refuse "$problem"
