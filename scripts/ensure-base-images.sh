#!/usr/bin/env bash
# Resolve the base images the Dockerfiles build FROM. The official images are
# used when present or pullable; when no registry answers, a Debian stand-in
# is built with mmdebstrap from the machine's own Debian mirror, so the stack
# still builds offline. Idempotent: stand-ins are built once and reused.
# Prints PYTHON_BASE_IMAGE=..., NGINX_BASE_IMAGE=... and POSTGRES_BASE_IMAGE=...
# on stdout, nothing until all are resolved. With the argument `monitoring`, also
# PROMETHEUS_BASE_IMAGE=... and NGINX_EXPORTER_BASE_IMAGE=... (make monitor).
# With the argument `bench`, also HTTPD_BASE_IMAGE=... (the lab's Apache httpd,
# bench/apache/): nothing else needs it, so nothing else waits for it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

PULL_TIMEOUT=${PULL_TIMEOUT:-60}
# Tags name what is inside: trixie's python3 is 3.13, forky's nginx is 1.30
# (the nginx build checks that this still holds).
PYTHON_STANDIN=flask-concurrency-local/python:3.13-trixie
# r2: with envsubst (gettext-base), as the official image has. r3: with the
# official image's entrypoint interface (scripts/nginx-standin/).
NGINX_STANDIN=flask-concurrency-local/nginx:1.30-forky-r3
# forky's postgresql is 18, as the official postgres:18; with the official
# image's interface the project uses (scripts/postgres-standin/).
POSTGRES_STANDIN=flask-concurrency-local/postgres:18-forky
# forky's prometheus is 3.5, its prometheus-nginx-exporter 1.5.
PROMETHEUS_STANDIN=flask-concurrency-local/prometheus:3.5-forky
NGINX_EXPORTER_STANDIN=flask-concurrency-local/nginx-prometheus-exporter:1.5-forky
# forky's apache2 is httpd 2.4, with the event MPM as a loadable module as in
# the official httpd:2.4 (the build checks both).
HTTPD_STANDIN=flask-concurrency-local/httpd:2.4-forky

one_at_a_time ensure-base-images
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# official VAR DOCKERFILE: the official image's name, from the Dockerfile's
# `ARG VAR=...` default, the one place it is written.
official() { sed -n "s/^ARG $1=//p" "$2"; }

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || die "mmdebstrap is needed to build a stand-in base image; install it and run this again."
  say "installing mmdebstrap"
  # Wait for another apt run (e.g. ensure-docker.sh) instead of failing on its lock.
  local apt=(apt-get -qq -o DPkg::Lock::Timeout=600)
  apt-cache show mmdebstrap >/dev/null 2>&1 || "${apt[@]}" update
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 "${apt[@]}" install -y --no-install-recommends mmdebstrap >/dev/null
}

# rootfs SUITE PACKAGES OUT.tar [extra mmdebstrap options...]
# The host's CA bundle goes in so pip and curl trust what the host trusts
# (a TLS-intercepting proxy, for one). mmdebstrap already drops apt lists/caches.
rootfs() {
  local suite=$1 pkgs=$2 out=$3 mirror
  shift 3
  ensure_mmdebstrap
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "cannot find a Debian mirror in /etc/apt/sources.list*"
  mmdebstrap --quiet --variant=apt --include="$pkgs" \
    --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
    --customize-hook='upload /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt' \
    "$@" "$suite" "$out" "$mirror"
}

# import_rootfs OUT.tar TAG OFFICIAL [docker import options...]
import_rootfs() {
  local tar=$1 tag=$2 official=$3
  shift 3
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL org.opencontainers.image.description=\"local stand-in for $official, built by scripts/ensure-base-images.sh\"" \
    "$@" "$tar" "$tag" >/dev/null
}

# build_python TAG OFFICIAL
build_python() {
  rootfs trixie python3,python3-venv,ca-certificates "$tmp/python.tar" \
    --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python"'
  import_rootfs "$tmp/python.tar" "$1" "$2" --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]'
}

# build_nginx TAG OFFICIAL
# Mirrors what nginxinc/nginx-unprivileged gives: user nginx 101:101 (written
# by hand: forky's minimal system has no groupadd/useradd), a config that runs
# as that user (pid and temp files in /tmp, logs to the container's
# stdout/stderr), /etc/nginx writable by it, an empty conf.d to fill, and the
# part of its entrypoint the project uses: /docker-entrypoint.sh running the
# hooks in /docker-entrypoint.d/, with the resolver and template steps
# (scripts/nginx-standin/: the stand-in's own scripts, same names and
# variables as the official ones).
build_nginx() {
  cat >"$tmp/nginx.conf" <<'CONF'
worker_processes  auto;
error_log  /var/log/nginx/error.log notice;
pid        /tmp/nginx.pid;
events {
    worker_connections  1024;
}
http {
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path       /tmp/proxy_temp;
    fastcgi_temp_path     /tmp/fastcgi_temp;
    uwsgi_temp_path       /tmp/uwsgi_temp;
    scgi_temp_path        /tmp/scgi_temp;
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;
    access_log    /var/log/nginx/access.log;
    sendfile      on;
    keepalive_timeout  65;
    include /etc/nginx/conf.d/*.conf;
}
CONF
  rootfs forky nginx,curl,gettext-base,ca-certificates "$tmp/nginx.tar" \
    --customize-hook='chroot "$1" nginx -v 2>&1 | grep -q "nginx/1\.30\." || { echo "forky no longer ships nginx 1.30; update NGINX_STANDIN" >&2; exit 1; }' \
    --customize-hook='echo "nginx:x:101:" >>"$1/etc/group"; echo "nginx:x:101:101:nginx user:/nonexistent:/usr/sbin/nologin" >>"$1/etc/passwd"' \
    --customize-hook="upload $tmp/nginx.conf /etc/nginx/nginx.conf" \
    --customize-hook='rm -rf "$1"/etc/nginx/sites-enabled/* "$1"/etc/nginx/conf.d/*' \
    --customize-hook='ln -sf /dev/stdout "$1/var/log/nginx/access.log"; ln -sf /dev/stderr "$1/var/log/nginx/error.log"' \
    --customize-hook='mkdir -p "$1/var/cache/nginx"; chown -R 101:0 "$1/etc/nginx" "$1/var/cache/nginx"; chmod -R g+w "$1/etc/nginx" "$1/var/cache/nginx"' \
    --customize-hook="copy-in $here/nginx-standin/docker-entrypoint.sh $here/nginx-standin/docker-entrypoint.d /" \
    --customize-hook='chown -R 0:0 "$1/docker-entrypoint.sh" "$1/docker-entrypoint.d"; chmod -R 0755 "$1/docker-entrypoint.sh" "$1/docker-entrypoint.d"'
  # No STOPSIGNAL here: Docker 20.10's import refuses it (nginx/Dockerfile sets it).
  import_rootfs "$tmp/nginx.tar" "$1" "$2" --change 'USER 101' \
    --change 'ENTRYPOINT ["/docker-entrypoint.sh"]' --change 'CMD ["nginx", "-g", "daemon off;"]'
}

# build_postgres TAG OFFICIAL
# As the official postgres:18: the server's binaries on the PATH, the user
# postgres as 999:999 (made before the package, which then keeps it), no
# cluster made at install (the entrypoint initialises the volume on first
# start), PGDATA under the volume /var/lib/postgresql, the socket directory
# /var/run/postgresql, SIGINT to stop.
build_postgres() {
  rootfs forky postgresql-18,ca-certificates "$tmp/postgres.tar" \
    --aptopt='APT::Install-Recommends "false"' \
    --essential-hook='echo "postgres:x:999:" >>"$1/etc/group"; echo "postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh" >>"$1/etc/passwd"' \
    --essential-hook='mkdir -p "$1/etc/postgresql-common" && echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.conf"' \
    --customize-hook='chroot "$1" /usr/lib/postgresql/18/bin/postgres --version | grep -q " 18\." || { echo "forky no longer ships postgresql 18; update POSTGRES_STANDIN" >&2; exit 1; }' \
    --customize-hook="copy-in $here/postgres-standin/docker-entrypoint.sh /usr/local/bin" \
    --customize-hook='chmod 0755 "$1/usr/local/bin/docker-entrypoint.sh"' \
    --customize-hook='mkdir -p "$1/var/lib/postgresql" "$1/var/run/postgresql"; chown 999:999 "$1/var/lib/postgresql"; chown 999:999 "$1/var/run/postgresql"; chmod 3777 "$1/var/run/postgresql"'
  import_rootfs "$tmp/postgres.tar" "$1" "$2" --change 'USER 999' \
    --change 'ENV PATH=/usr/lib/postgresql/18/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PGDATA=/var/lib/postgresql/18/docker' --change 'ENV LANG=C.UTF-8' \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["postgres"]'
}

# build_prometheus TAG OFFICIAL
# As prom/prometheus: prometheus and promtool on the PATH, the data directory
# /prometheus owned by nobody (65534), who runs it.
build_prometheus() {
  rootfs forky prometheus,ca-certificates "$tmp/prometheus.tar" \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='chroot "$1" prometheus --version 2>&1 | grep -q "version 3\.5\." || { echo "forky no longer ships prometheus 3.5; update PROMETHEUS_STANDIN" >&2; exit 1; }' \
    --customize-hook='mkdir -p "$1/prometheus" && chown 65534:65534 "$1/prometheus"'
  import_rootfs "$tmp/prometheus.tar" "$1" "$2" --change 'USER 65534' --change 'WORKDIR /prometheus' \
    --change 'ENTRYPOINT ["prometheus"]'
}

# build_nginx_exporter TAG OFFICIAL
# As nginx/nginx-prometheus-exporter: the binary under the official name, run
# by nobody.
build_nginx_exporter() {
  rootfs forky prometheus-nginx-exporter,ca-certificates "$tmp/nginx-exporter.tar" \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='ln -s prometheus-nginx-exporter "$1/usr/bin/nginx-prometheus-exporter"'
  import_rootfs "$tmp/nginx-exporter.tar" "$1" "$2" --change 'USER 65534' \
    --change 'ENTRYPOINT ["nginx-prometheus-exporter"]'
}

# build_httpd TAG OFFICIAL
# As the official httpd:2.4, where the lab relies on it: ServerRoot
# /usr/local/apache2 with bin/httpd (Debian's apache2 binary, whose own
# compiled-in root is /etc/apache2, pointed at this root and its
# conf/httpd.conf; a later -d or -f still wins), modules/ (Debian's module
# directory: the same file names, every MPM a loadable module), conf/ with a
# minimal httpd.conf and mime.types, logs/, and httpd-foreground on the PATH
# (the official script, word for word). The official image also runs as root
# and leaves dropping privileges to `User daemon`; the lab's image sets
# USER itself (bench/apache/Dockerfile), so both behave alike there.
build_httpd() {
  cat >"$tmp/httpd.conf" <<'CONF'
# The stand-in's default configuration: a complete server, as the official
# image ships one; images built FROM it replace it.
ServerRoot "/usr/local/apache2"
Listen 80
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule mime_module modules/mod_mime.so
LoadModule dir_module modules/mod_dir.so
<IfModule !unixd_module>
LoadModule unixd_module modules/mod_unixd.so
</IfModule>
User daemon
Group daemon
ServerName localhost
DocumentRoot "/usr/local/apache2/htdocs"
DirectoryIndex index.html
TypesConfig conf/mime.types
ErrorLog /proc/self/fd/2
LogLevel warn
PidFile logs/httpd.pid
CONF
  cat >"$tmp/httpd" <<'SH'
#!/bin/sh
# Debian's apache2, with the official image's server root and config file.
exec /usr/sbin/apache2 -d /usr/local/apache2 -f conf/httpd.conf "$@"
SH
  cat >"$tmp/httpd-foreground" <<'SH'
#!/bin/sh
set -e

# Apache gets grumpy about PID files pre-existing
rm -f /usr/local/apache2/logs/httpd.pid

exec httpd -DFOREGROUND "$@"
SH
  rootfs forky apache2,ca-certificates "$tmp/httpd.tar" \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='chroot "$1" apache2 -v | grep -q "Apache/2\.4\." || { echo "forky no longer ships httpd 2.4; update HTTPD_STANDIN" >&2; exit 1; }' \
    --customize-hook='[ -f "$1/usr/lib/apache2/modules/mod_mpm_event.so" ] || { echo "forky'"'"'s apache2 has no loadable event MPM" >&2; exit 1; }' \
    --customize-hook='mkdir -p "$1/usr/local/apache2/bin" "$1/usr/local/apache2/conf" "$1/usr/local/apache2/logs" "$1/usr/local/apache2/htdocs"' \
    --customize-hook='ln -s /usr/lib/apache2/modules "$1/usr/local/apache2/modules"; ln -s /etc/mime.types "$1/usr/local/apache2/conf/mime.types"' \
    --customize-hook='echo "<html><body><h1>It works!</h1></body></html>" >"$1/usr/local/apache2/htdocs/index.html"' \
    --customize-hook="upload $tmp/httpd.conf /usr/local/apache2/conf/httpd.conf" \
    --customize-hook="upload $tmp/httpd /usr/local/apache2/bin/httpd" \
    --customize-hook="upload $tmp/httpd-foreground /usr/local/bin/httpd-foreground" \
    --customize-hook='chmod 0755 "$1/usr/local/apache2/bin/httpd" "$1/usr/local/bin/httpd-foreground"' \
    --customize-hook='chroot "$1" /usr/local/apache2/bin/httpd -t'
  # No STOPSIGNAL here (SIGWINCH, a graceful stop, in the official image):
  # Docker 20.10's import refuses it; bench/apache/Dockerfile sets it.
  import_rootfs "$tmp/httpd.tar" "$1" "$2" \
    --change 'ENV HTTPD_PREFIX=/usr/local/apache2' \
    --change 'ENV PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /usr/local/apache2' --change 'EXPOSE 80' --change 'CMD ["httpd-foreground"]'
}

# resolve VAR DEFAULT STAND-IN BUILDER: print VAR=<image to use>.
resolve() {
  local var=$1 official=$2 standin=$3 builder=$4 image t0
  # The shell's or .env's, as Compose reads every other setting.
  image=$(setting "$var")
  image=${image:-$official}
  if have_image "$image"; then
    say "$var: $image (present locally)"
  elif timeout "$PULL_TIMEOUT" docker pull --quiet "$image" >/dev/null 2>&1; then
    say "$var: $image (pulled)"
  elif [ "$image" != "$official" ] && [ "$image" != "$standin" ]; then
    printf "configuration error: %s='%s' is not valid: expected an image present locally or that can be pulled; unset it to fall back to a local stand-in\n" "$var" "$image" >&2
    exit 2
  elif have_image "$standin"; then
    image=$standin
    say "$var: $image (local stand-in, built earlier; $official could not be pulled)"
  else
    say "$var: $official could not be pulled; building local stand-in $standin"
    t0=$SECONDS
    "$builder" "$standin" "$official" >&2
    image=$standin
    say "$var: $image (stand-in built in $((SECONDS - t0)) s)"
  fi
  printf '%s=%s\n' "$var" "$image"
}

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "the Docker engine does not answer; run scripts/ensure-docker.sh first."
{
  resolve PYTHON_BASE_IMAGE "$(official PYTHON_BASE_IMAGE "$here/../Dockerfile")" "$PYTHON_STANDIN" build_python
  resolve NGINX_BASE_IMAGE "$(official NGINX_BASE_IMAGE "$here/../nginx/Dockerfile")" "$NGINX_STANDIN" build_nginx
  resolve POSTGRES_BASE_IMAGE "$(official POSTGRES_BASE_IMAGE "$here/../db/Dockerfile")" "$POSTGRES_STANDIN" build_postgres
  if [[ " $* " == *" monitoring "* ]]; then
    resolve PROMETHEUS_BASE_IMAGE "$(official PROMETHEUS_BASE_IMAGE "$here/../monitoring/prometheus/Dockerfile")" \
      "$PROMETHEUS_STANDIN" build_prometheus
    resolve NGINX_EXPORTER_BASE_IMAGE \
      "$(official NGINX_EXPORTER_BASE_IMAGE "$here/../monitoring/nginx-exporter/Dockerfile")" \
      "$NGINX_EXPORTER_STANDIN" build_nginx_exporter
  fi
  if [[ " $* " == *" bench "* ]]; then
    resolve HTTPD_BASE_IMAGE "$(official HTTPD_BASE_IMAGE "$here/../bench/apache/Dockerfile")" \
      "$HTTPD_STANDIN" build_httpd
  fi
} >"$tmp/base-images.env"
cat "$tmp/base-images.env"
