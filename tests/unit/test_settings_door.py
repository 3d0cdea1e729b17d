"""Every variable of the README's table, given one bad value, is refused
before anything starts, with one line naming it and its value: here the
doors that need no Docker (tests/settings_door.py says which is which;
tests/integration/test_make_check.py runs the others on the images)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from harness.stack import REPO
from serving.settings import NGINX_UPSTREAM_KEEPALIVE_TIMEOUT
from tests.settings_door import BAD_VALUES, COMPOSE_BUDGET, assert_one_line_naming, by_door
from tests.unit.test_settings_docs import readme_table_rows

pytestmark = pytest.mark.unit


def test_the_table_has_one_bad_value_for_every_variable_of_the_readme():
    documented = set().union(*(names for names, _ in readme_table_rows()))
    assert set(BAD_VALUES) == documented


def _host_env(tmp_path, **settings: str) -> dict[str, str]:
    """A clean environment: the checkout's .env is not read where the test
    sets a value (the environment wins, as with Compose)."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", **settings}


def _door(command: list, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("name", "bad", "needs"), by_door("compose"), ids=lambda v: v if isinstance(v, str) else "")
def test_compose_refuses_a_bad_value_naming_it(tmp_path, name, bad, needs):
    result = _door([REPO / "scripts" / "check-settings.sh"], _host_env(tmp_path, **needs, **{name: bad}))
    assert result.returncode == 2
    assert_one_line_naming(result.stderr, name, bad)


def test_compose_accepts_the_defaults_and_usual_values(tmp_path):
    usual = {"APP_REPLICAS": "4", "APP_CPUS": "1.5", "APP_MEMORY": "2g", "NGINX_MEMORY": "512m", "HTTP_PORT": "80"}
    usual |= {"COMPOSE_PROFILES": "db,monitoring", "PROMETHEUS_RETENTION": "30d", "DB_PIDS": "256"}
    for env in ({}, usual):
        result = _door([REPO / "scripts" / "check-settings.sh"], _host_env(tmp_path, **env))
        assert (result.returncode, result.stderr) == (0, ""), env


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> str:
    """A self-signed certificate nginx's user could read: the bad key is the only problem."""
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "2"]
        + ["-keyout", str(where / "key.pem"), "-out", str(where / "cert.pem")],
        check=True,
        capture_output=True,
    )
    (where / "cert.pem").chmod(0o644)
    where.chmod(0o755)
    return str(where / "cert.pem")


@pytest.mark.parametrize(("name", "bad", "needs"), by_door("tls"), ids=lambda v: v if isinstance(v, str) else "")
def test_the_certificate_check_refuses_a_bad_file_naming_it(tmp_path, certificate, name, bad, needs):
    needs = {key: value.format(cert=certificate) for key, value in needs.items()}
    result = _door([REPO / "scripts" / "check-tls.sh"], _host_env(tmp_path, **needs, **{name: bad}))
    assert result.returncode == 2
    assert_one_line_naming(result.stderr, name, bad)


@pytest.mark.parametrize(("name", "bad", "needs"), by_door("server"), ids=lambda v: v if isinstance(v, str) else "")
def test_the_server_check_refuses_a_bad_value_naming_it(tmp_path, name, bad, needs):
    # What `make check` runs in the app's image, run here with the same code:
    # the settings as docker-compose.yml hands them over, the app loaded.
    result = _door(
        [sys.executable, "-m", "serving.check"], _host_env(tmp_path, **COMPOSE_BUDGET, **needs, **{name: bad})
    )
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert_one_line_naming(result.stderr, name, bad)


def test_the_server_check_accepts_the_defaults(tmp_path):
    result = _door([sys.executable, "-m", "serving.check"], _host_env(tmp_path, **COMPOSE_BUDGET))
    assert result.returncode == 0, result.stderr


#: nginx's entrypoint hook on this host's sh, as the image runs it: the
#: values docker-compose.yml and the lab hand it, with one changed.
NGINX_HOOK = REPO / "nginx" / "docker-entrypoint.d" / "18-check-settings.sh"
NGINX_FILTER = re.search(r"NGINX_ENVSUBST_FILTER='([^']+)'", (REPO / "nginx" / "Dockerfile").read_text())[1]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVER_NAMES", "~^nginx(-[a-z-]+)?$ 127.0.0.1"),  # the lab's: a regular expression
        ("SERVER_NAMES", "*.example.com www.example.com"),
        ("NGINX_RATE_LIMIT", "1000000r/s"),
        ("NGINX_RATE_LIMIT", "60r/m"),
        ("NGINX_RATE_BURST", "0"),
    ],
)
def test_nginx_takes_the_values_it_serves_with(tmp_path, name, value):
    settings = {
        "NGINX_ENVSUBST_FILTER": NGINX_FILTER,
        "NGINX_ENVSUBST_TEMPLATE_DIR": str(REPO / "nginx" / "templates"),
        "NGINX_ENVSUBST_OUTPUT_DIR": str(tmp_path / "out"),
        "NGINX_SITE_MODE": "http",
        "NGINX_LOCAL_RESOLVERS": "127.0.0.11",
        "NGINX_PROXY_READ_TIMEOUT": "60s",
        "SERVER_NAMES": "localhost 127.0.0.1",
        "NGINX_RATE_LIMIT": "1000r/s",
        "NGINX_RATE_BURST": "2000",
        "NGINX_CONNECTIONS_PER_CLIENT": "1000",
        "HSTS_MAX_AGE": "63072000",
        "HTTPS_PORT": "8443",
        "CONTENT_SECURITY_POLICY": "default-src 'none'",
    }
    result = _door(["sh", NGINX_HOOK], _host_env(tmp_path, **(settings | {name: value})))
    assert (result.returncode, result.stderr) == (0, "")


def test_gunicorns_keep_alive_bound_is_nginxs_upstream_keepalive_timeout():
    # serving/settings.py keeps nginx's figure, which nginx/conf.d/app.conf sets.
    upstream = re.search(
        r"^upstream app \{\n(.*?)^\}", (REPO / "nginx" / "conf.d" / "app.conf").read_text(), re.M | re.S
    )[1]
    (seconds,) = re.findall(r"^\s*keepalive_timeout (\d+)s;", upstream, flags=re.MULTILINE)
    assert int(seconds) == NGINX_UPSTREAM_KEEPALIVE_TIMEOUT
