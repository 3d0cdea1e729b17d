"""The development server refuses to run outside APP_ENV=development."""

from __future__ import annotations

import pytest
import werkzeug.serving

from app.factory import DevServerRefused, create_app

pytestmark = pytest.mark.unit


@pytest.fixture
def run_simple_calls(monkeypatch):
    """Stand in for werkzeug's run_simple, so that a broken guard makes a test
    fail instead of serving forever."""
    calls: list[tuple] = []
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    return calls


@pytest.mark.parametrize("app_env", [None, "production", "", "Development", "dev"])
def test_run_refused_outside_development(monkeypatch, run_simple_calls, app_env):
    if app_env is None:
        monkeypatch.delenv("APP_ENV", raising=False)
    else:
        monkeypatch.setenv("APP_ENV", app_env)
    with pytest.raises(DevServerRefused, match="refusing"):
        create_app().run(port=1)
    assert run_simple_calls == []


def test_run_allowed_in_development(monkeypatch, run_simple_calls):
    monkeypatch.setenv("APP_ENV", "development")
    create_app().run(host="127.0.0.1", port=5999)
    assert len(run_simple_calls) == 1
    args, _ = run_simple_calls[0]
    assert args[:2] == ("127.0.0.1", 5999)


def test_refused_is_a_runtime_error():
    assert issubclass(DevServerRefused, RuntimeError)


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
        status, health = helpers.http_get_json(f"http://127.0.0.1:{port}/healthz")
        assert (status, health) == (200, {"status": "ok"})
    assert proc.poll() is not None
