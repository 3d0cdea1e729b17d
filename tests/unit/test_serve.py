"""app.serve, the container's command: settings checked before gunicorn starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import serve
from app.settings import SettingsError

pytestmark = pytest.mark.unit


def test_gunicorn_gets_web_concurrency_resolved():
    env = serve.gunicorn_environment({"WEB_CONCURRENCY": "", "WORKER_CLASS": "gevent"})
    assert env["WEB_CONCURRENCY"].isdigit() and int(env["WEB_CONCURRENCY"]) >= 3
    assert env["WORKER_CLASS"] == "gevent"
    assert serve.gunicorn_environment({"WEB_CONCURRENCY": "7"})["WEB_CONCURRENCY"] == "7"


def test_bad_value_raises_before_gunicorn():
    with pytest.raises(SettingsError, match="WEB_CONCURRENCY"):
        serve.gunicorn_environment({"WEB_CONCURRENCY": "2.5"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WEB_CONCURRENCY", "abc"), ("WEB_CONCURRENCY", "2.5"), ("WORKER_CLASS", "eventlet")],
)
def test_bad_value_exits_2_with_one_line_naming_the_variable(helpers, env_factory, variable, value):
    # gunicorn itself would die with a ValueError traceback on WEB_CONCURRENCY=abc.
    result = helpers.run_python(["-m", "app.serve"], env_factory(**{variable: value}))
    assert result.returncode == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"configuration error: {variable}={value!r}")
    assert "Traceback" not in result.stderr


def test_valid_settings_become_gunicorn(helpers, env_factory, tmp_path):
    port = helpers.free_port()
    env = env_factory(WORKER_CLASS="sync", WEB_CONCURRENCY="1", GUNICORN_BIND=f"127.0.0.1:{port}")
    with helpers.serving(["-m", "app.serve"], env, tmp_path / "serve.log", port) as (proc, body):
        assert body["status"] == "ok"
        # exec: the process the container started is gunicorn itself.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"gunicorn" in cmdline and b"python:app.gunicorn_conf" in cmdline
        assert '"workers": 1' in (tmp_path / "serve.log").read_text()
