"""The user's views and the health endpoints, through Flask's test client."""

from __future__ import annotations

import platform

import pytest

pytestmark = pytest.mark.unit


def assert_json(response):
    assert response.mimetype == "application/json", response.data[:200]
    return response.get_json()


# --- / ------------------------------------------------------------------------


def test_index(client):
    response = client.get("/")
    assert response.status_code == 200
    assert assert_json(response) == {"service": "flask-concurrency", "status": "ok"}


def test_index_reveals_no_process_or_version_details(client):
    text = client.get("/").get_data(as_text=True)
    for detail in ("pid", "hostname", "version", platform.python_version(), "gunicorn", "werkzeug"):
        assert detail not in text.lower()


# --- /healthz and /readyz -----------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert assert_json(response) == {"status": "ok"}


def test_readyz_without_checks(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert assert_json(response) == {"status": "ready", "checks": []}


def test_readyz_with_passing_checks(app, client):
    app.config["READINESS_CHECKS"] = {"db": lambda: True, "cache": lambda: 1}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert assert_json(response) == {"status": "ready", "checks": ["cache", "db"]}


def test_readyz_names_a_check_that_returns_false(app, client):
    app.config["READINESS_CHECKS"] = {"db": lambda: True, "cache": lambda: False}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert assert_json(response) == {"status": "not ready", "failed": ["cache"]}


def test_readyz_names_a_check_that_raises_and_logs_it(app, client, caplog):
    def broken():
        raise ConnectionError("db down")

    app.config["READINESS_CHECKS"] = {"db": broken}
    with caplog.at_level("ERROR"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = assert_json(response)
    assert body == {"status": "not ready", "failed": ["db"]}
    assert "db down" not in response.get_data(as_text=True)
    records = [r for r in caplog.records if "readiness check db raised" in r.getMessage()]
    assert records and records[0].exc_info is not None


def test_readyz_answers_503_while_draining(served, monkeypatch):
    from serving import lifecycle

    client = served()
    monkeypatch.setattr(lifecycle, "_draining", False)
    assert client.get("/readyz").status_code == 200
    lifecycle.begin_draining()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert assert_json(response) == {"status": "draining"}
    # Liveness is another question: a draining worker is alive.
    assert client.get("/healthz").status_code == 200


def test_the_health_paths_are_the_servers_not_the_apps(app, client):
    from serving.health import PATHS

    assert not set(PATHS) & {rule.rule for rule in app.url_map.iter_rules()}
    assert [client.get(path).status_code for path in PATHS] == [200, 200]


def test_liveness_runs_a_request_through_the_app_and_only_a_server_error_fails_it():
    from flask import Flask, redirect

    from tests.unit.conftest import served_by_the_server

    guarded = Flask("guarded")

    @guarded.before_request
    def log_in_first():
        # A common guard: every page asks for a login first. The app runs.
        return redirect("/login")

    broken = Flask("broken")

    @broken.before_request
    def fail():
        raise RuntimeError("broken on purpose")

    assert served_by_the_server(guarded).get("/healthz").status_code == 200
    client = served_by_the_server(broken)
    failing = client.get("/healthz")
    assert failing.status_code == 503 and failing.get_json() == {"status": "failing"}
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["failed"] == ["app"]
