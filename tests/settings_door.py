"""One bad value for every variable of the README's configuration table, and
the door that refuses it: the check that reads it before anything starts.

- `compose`: scripts/check-settings.sh (scripts/compose runs it before any
  Compose command), for what Compose itself reads;
- `tls`: scripts/check-tls.sh, the certificate and its key;
- `server`: `python3 -m serving.check` (make check, in the app's image), the
  server's settings and the app's own, cross-checks included;
- `nginx`: the nginx image's entrypoint hooks and `nginx -t` (make check);
- `base image`: scripts/ensure-base-images.sh.

tests/unit/test_settings_door.py runs the doors that need no Docker, and
tests/integration/test_make_check.py the others, on the real images, and
`make check` once per door."""

from __future__ import annotations

import re

#: NAME -> (door, the bad value, other settings it needs to be read at all).
BAD_VALUES: dict[str, tuple[str, str, dict[str, str]]] = {
    # Compose's own.
    "HTTP_PORT": ("compose", "99999", {}),
    "HTTPS_PORT": ("compose", "0", {}),
    "APP_REPLICAS": ("compose", "17", {}),
    "APP_CPUS": ("compose", "two", {}),
    "APP_CPU_SHARES": ("compose", "heavy", {}),
    "APP_MEMORY": ("compose", "lots", {}),
    "APP_PIDS": ("compose", "many", {}),
    "NGINX_CPUS": ("compose", "all", {}),
    "NGINX_CPU_SHARES": ("compose", "1", {}),
    "NGINX_MEMORY": ("compose", "1", {}),
    "NGINX_PIDS": ("compose", "0", {}),
    "DB_MEMORY": ("compose", "big", {}),
    "DB_PIDS": ("compose", "-1", {}),
    "PROMETHEUS_PORT": ("compose", "http", {}),
    "PROMETHEUS_MEMORY": ("compose", "512", {}),
    "PROMETHEUS_RETENTION": ("compose", "forever", {}),
    "COMPOSE_PROFILES": ("compose", "db,database", {}),
    # The certificate.
    "TLS_CERT_FILE": ("tls", "/nonexistent/cert.pem", {"TLS_KEY_FILE": "/nonexistent/key.pem"}),
    "TLS_KEY_FILE": ("tls", "/nonexistent/key.pem", {"TLS_CERT_FILE": "{cert}"}),
    # The server's (serving/settings.py) and the app's (demo/config.py).
    "APP_MODULE": ("server", "my app", {}),
    "SECRET_KEY_FILE": ("server", "/nonexistent/secret_key", {}),
    "DATABASE_PASSWORD_FILE": ("server", "/nonexistent/db_password", {}),
    "WORKER_CLASS": ("server", "eventlet", {}),
    "WEB_CONCURRENCY": ("server", "lots", {}),
    "GUNICORN_THREADS": ("server", "0", {"WORKER_CLASS": "gthread"}),
    "GUNICORN_WORKER_CONNECTIONS": ("server", "0", {}),
    "GUNICORN_TIMEOUT": ("server", "90", {}),  # over nginx's proxy_read_timeout
    "GUNICORN_GRACEFUL_TIMEOUT": ("server", "soon", {}),
    "GUNICORN_KEEPALIVE": ("server", "30", {}),  # under nginx's upstream keep-alive
    "GUNICORN_MAX_REQUESTS": ("server", "-1", {}),
    "GUNICORN_MAX_REQUESTS_JITTER": ("server", "50", {}),  # with no GUNICORN_MAX_REQUESTS
    "GUNICORN_LOG_LEVEL": ("server", "loud", {}),
    "GUNICORN_ACCESS_LOG": ("server", "maybe", {}),
    "LOG_FORMAT": ("server", "xml", {}),
    "METRICS_PORT": ("server", "http", {}),
    "GUNICORN_BIND": ("server", "nowhere", {}),
    "FORWARDED_ALLOW_IPS": ("server", "not-an-ip", {}),
    "GUNICORN_STOCK_WORKERS": ("server", "perhaps", {}),
    "STATIC_PUBLISH_DIR": ("server", "static", {}),
    "APP_MOUNTS": ("server", "admin", {}),
    "DATABASE_POOL_SIZE": ("server", "0", {}),
    "DATABASE_POOL_TIMEOUT": ("server", "60", {}),
    "DATABASE_CONNECT_TIMEOUT": ("server", "0", {}),
    "DATABASE_RESERVED_CONNECTIONS": ("server", "-1", {}),
    "DEMO_ENDPOINTS": ("server", "maybe", {}),
    "DEMO_MAX_WORK_MS": ("server", "40000", {}),  # over the default 30 s GUNICORN_TIMEOUT
    "DATABASE_URL": ("server", "mysql://app@db/app", {}),
    # nginx's.
    "HSTS_MAX_AGE": ("nginx", "abc", {}),
    "SERVER_NAMES": ("nginx", "example.com;", {}),
    "NGINX_RATE_LIMIT": ("nginx", "fast", {}),
    "NGINX_RATE_BURST": ("nginx", "-1", {}),
    "NGINX_CONNECTIONS_PER_CLIENT": ("nginx", "many", {}),
    "CONTENT_SECURITY_POLICY": ("nginx", "script-src self", {}),
    "TRUSTED_PROXY_HOPS": ("nginx", "9", {}),
    "TRUSTED_PROXY_ADDRESSES": ("nginx", "not-an-ip", {"TRUSTED_PROXY_HOPS": "2"}),
    # The base images.
    "PYTHON_BASE_IMAGE": ("base image", "no such image", {}),
    "NGINX_BASE_IMAGE": ("base image", "no such image", {}),
    "PROMETHEUS_BASE_IMAGE": ("base image", "no such image", {}),
    "NGINX_EXPORTER_BASE_IMAGE": ("base image", "no such image", {}),
}

#: What the compose file hands the app besides the user's settings: the
#: outside ends of the timeout budget (docker-compose.yml's x-budget).
COMPOSE_BUDGET = {"NGINX_PROXY_READ_TIMEOUT": "60s", "APP_STOP_GRACE_PERIOD": "45s"}


def by_door(door: str) -> list[tuple[str, str, dict[str, str]]]:
    return [(name, bad, needs) for name, (kind, bad, needs) in BAD_VALUES.items() if kind == door]


def assert_one_line_naming(stderr: str, name: str, bad: str) -> str:
    """The refusal: one `configuration error:` line, and nothing like a
    traceback, naming the variable and the value it was given."""
    lines = [line for line in stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1, stderr
    (line,) = lines
    assert "Traceback" not in stderr, stderr
    assert re.search(rf"\b{name}[=:] ?'?{re.escape(bad)}'?", line), line
    return line
