#!/bin/sh
# The local stand-in's entrypoint (scripts/ensure-base-images.sh), written
# for this project: the part of the official postgres image's interface the
# project uses. On the first start, an empty volume is initialised: the
# superuser POSTGRES_USER (default postgres) with the password in
# POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD), the database POSTGRES_DB
# (default the user's name), TCP on every address with scram-sha-256, local
# socket connections trusted, as the official image does. Then the command.
# Runs as the postgres user (999); the data directory is $PGDATA.
set -eu

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
fi
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: database is uninitialized and POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is not set" >&2
    exit 1
  fi
  echo "initialising $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  password=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$password"
  initdb --username="$POSTGRES_USER" --pwfile="$password" --auth-local=trust --auth-host=scram-sha-256 \
    --pgdata="$PGDATA" >/dev/null
  rm -f "$password"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  printf '%s\n' "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "$POSTGRES_DB" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "initialised"
fi

exec "$@"
