#!/usr/bin/env bash
# What the running stack delivers: each replica's effective gunicorn
# configuration (the JSON line serving/gunicorn_conf.py logs at start), then the
# replicas and the requests they serve at once, all together.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

total=0
replicas=0
connections=0
for id in $("$root/scripts/compose" ps -q --status running app); do
  line=$(docker logs "$id" 2>&1 | grep '"event": "gunicorn.config"' | tail -n 1)
  [ -n "$line" ] || continue
  echo "$(docker inspect -f '{{.Name}}' "$id" | sed 's,^/,,'): $line"
  per_replica=$(grep -o '"max_concurrent_requests": [0-9]*' <<<"$line" | grep -o '[0-9]*$')
  total=$((total + per_replica))
  connections=$((connections + $(grep -o '"database_connections_per_replica": [0-9]*' <<<"$line" | grep -o '[0-9]*$' || echo 0)))
  replicas=$((replicas + 1))
done
echo "$replicas replica(s) serving $total requests at once in all (max_concurrent_requests added up)"
echo "with a database, at most $connections connections in all (database_connections_per_replica added up; docs/database.md)"
