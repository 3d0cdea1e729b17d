"""Werkzeug's development server is refused outside APP_ENV=development,
for any app the server loads (serving/devguard.py)."""

from __future__ import annotations

import pytest
import werkzeug
import werkzeug.serving

from demo.factory import create_app
from serving import devguard

pytestmark = pytest.mark.unit


@pytest.fixture
def run_simple_calls(monkeypatch):
    """Stand in for werkzeug's run_simple, so that a broken guard makes a test
    fail instead of serving forever; the guard's own patch is undone after."""
    calls: list[tuple] = []
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(werkzeug, "run_simple", werkzeug.serving.run_simple)
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    return calls


@pytest.mark.parametrize("app_env", [None, "production", "", "Development", "dev"])
def test_run_refused_outside_development(monkeypatch, run_simple_calls, app_env):
    if app_env is None:
        monkeypatch.delenv("APP_ENV", raising=False)
    else:
        monkeypatch.setenv("APP_ENV", app_env)
    devguard.install()
    with pytest.raises(devguard.DevServerRefused, match="refusing"):
        create_app().run(port=1)
    assert run_simple_calls == []


def test_flask_run_is_refused_too(monkeypatch, run_simple_calls):
    # `flask run` binds run_simple when flask.cli is imported.
    import flask.cli

    monkeypatch.setattr(flask.cli, "run_simple", werkzeug.serving.run_simple)
    monkeypatch.delenv("APP_ENV", raising=False)
    devguard.install()
    with pytest.raises(devguard.DevServerRefused):
        flask.cli.run_simple("127.0.0.1", 1, create_app())
    assert run_simple_calls == []


def test_run_allowed_in_development(monkeypatch, run_simple_calls):
    monkeypatch.setenv("APP_ENV", "development")
    devguard.install()
    create_app().run(host="127.0.0.1", port=5999)
    assert len(run_simple_calls) == 1
    args, _ = run_simple_calls[0]
    assert args[:2] == ("127.0.0.1", 5999)


def test_module_refuses_without_app_env(helpers, env_factory):
    port = helpers.free_port()
    result = helpers.run_python(["-m", "serving.devserver", "--port", str(port)], env_factory(), timeout=20)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "refusing" in result.stderr
    assert "development server" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Running on" not in result.stdout + result.stderr
    assert not helpers.is_listening(port)


def test_module_serves_in_development(helpers, env_factory, tmp_path):
    port = helpers.free_port()
    args = ["-m", "serving.devserver", "--port", str(port), "--no-threaded"]
    with helpers.serving(args, env_factory(APP_ENV="development"), tmp_path / "devserver.log", port) as (
        proc,
        body,
    ):
        assert body == {"service": "flask-concurrency", "status": "ok"}
    assert proc.poll() is not None
