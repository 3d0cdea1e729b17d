"""Every endpoint, through Flask's test client."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import time

import pytest

from app import runtime, views
from app.errors import BadParameter

pytestmark = pytest.mark.unit


@pytest.fixture
def sleeps(monkeypatch):
    """Replace time.sleep as app.views sees it; returns the list of requested
    durations in seconds."""
    calls: list[float] = []
    monkeypatch.setattr(views.time, "sleep", calls.append)
    return calls


def assert_json(response):
    assert response.mimetype == "application/json", response.data[:200]
    return response.get_json()


# --- / ------------------------------------------------------------------------


def test_index_fields(client):
    response = client.get("/")
    assert response.status_code == 200
    body = assert_json(response)
    assert {"service", "server", "pid", "hostname", "versions"} <= set(body)
    assert body["service"] == "flask-concurrency"
    assert body["pid"] == os.getpid()
    assert body["hostname"] == socket.gethostname()
    assert body["server"] == runtime.server
    versions = body["versions"]
    assert set(versions) == {"python", "flask", "werkzeug", "gunicorn", "gevent"}
    assert versions["python"] == platform.python_version()
    for dist in ("flask", "werkzeug", "gunicorn", "gevent"):
        assert versions[dist] == importlib.metadata.version(dist), dist


def test_index_reports_the_client_as_proxyfix_sees_it(client):
    response = client.get(
        "/",
        headers={
            "X-Forwarded-For": "198.51.100.66, 203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "example.com",
        },
        environ_base={"REMOTE_ADDR": "172.18.0.5"},
    )
    body = assert_json(response)
    assert body["client"] == {"remote_addr": "203.0.113.7", "scheme": "https", "host": "example.com"}


def test_index_reports_the_server_the_runtime_module_holds(client, monkeypatch):
    monkeypatch.setattr(runtime, "server", {})
    runtime.server.update(server="gunicorn", worker_class="gthread", threads=3)
    body = assert_json(client.get("/"))
    assert body["server"] == {"server": "gunicorn", "worker_class": "gthread", "threads": 3}


def test_index_reports_a_missing_distribution_as_null(client, monkeypatch):
    real_version = importlib.metadata.version

    def version(dist):
        if dist == "gevent":
            raise importlib.metadata.PackageNotFoundError(dist)
        return real_version(dist)

    monkeypatch.setattr(views.importlib.metadata, "version", version)
    body = assert_json(client.get("/"))
    assert body["versions"]["gevent"] is None
    assert body["versions"]["flask"] == real_version("flask")


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
    app.config["READINESS_CHECKS"] = {"db": lambda: True, "cache": lambda: False, "queue": lambda: None}
    response = client.get("/readyz")
    assert response.status_code == 503
    body = assert_json(response)
    assert body["status"] == "not ready"
    assert body["failed"] == ["cache", "queue"]


def test_readyz_names_a_check_that_raises_and_logs_it(app, client, caplog):
    def db():
        raise ConnectionError("db down")

    app.config["READINESS_CHECKS"] = {"db": db, "cache": lambda: True}
    with caplog.at_level("ERROR"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = assert_json(response)
    assert body == {"status": "not ready", "failed": ["db"]}
    assert "db down" not in response.get_data(as_text=True)
    records = [r for r in caplog.records if "readiness check db raised" in r.getMessage()]
    assert records and records[0].exc_info is not None


# --- /work/io and /work/cpu ---------------------------------------------------


def test_work_io_waits_about_ms_of_wall_time(client):
    before = time.monotonic()
    response = client.get("/work/io?ms=30")
    elapsed = time.monotonic() - before
    assert response.status_code == 200
    body = assert_json(response)
    assert set(body) == {"pid", "started_at", "finished_at", "kind", "ms"}
    assert body["kind"] == "io"
    assert body["ms"] == 30
    assert body["pid"] == os.getpid()
    assert 0.025 <= elapsed < 2.0
    # The server's own timestamps frame the wait.
    assert 0.025 <= body["finished_at"] - body["started_at"] < 2.0
    assert abs(body["started_at"] - time.time()) < 60


def test_work_io_uses_time_sleep(client, sleeps):
    body = assert_json(client.get("/work/io?ms=30"))
    assert body["ms"] == 30
    assert sleeps == [0.03]


def test_work_cpu_burns_at_least_ms_of_thread_cpu_time(client):
    # The test client runs the view in this thread, so this thread's CPU clock
    # sees what the view burnt.
    cpu_before, wall_before = time.thread_time(), time.monotonic()
    response = client.get("/work/cpu?ms=30")
    cpu, wall = time.thread_time() - cpu_before, time.monotonic() - wall_before
    assert response.status_code == 200
    body = assert_json(response)
    assert set(body) == {"pid", "started_at", "finished_at", "kind", "ms", "spins"}
    assert body["kind"] == "cpu"
    assert body["ms"] == 30
    assert body["pid"] == os.getpid()
    assert isinstance(body["spins"], int) and body["spins"] > 0
    assert cpu >= 0.03
    assert wall < 5.0
    assert body["finished_at"] >= body["started_at"]


def test_work_cpu_does_not_sleep(client, sleeps):
    assert assert_json(client.get("/work/cpu?ms=5"))["kind"] == "cpu"
    assert sleeps == []


def test_work_io_default_ms(client, sleeps):
    body = assert_json(client.get("/work/io"))
    assert body["ms"] == 100
    assert sleeps == [0.1]


def test_work_cpu_default_ms(client):
    cpu_before = time.thread_time()
    body = assert_json(client.get("/work/cpu"))
    assert body["ms"] == 100
    assert time.thread_time() - cpu_before >= 0.1


@pytest.mark.parametrize("path", ["/work/io", "/work/cpu"])
def test_work_accepts_zero(client, sleeps, path):
    response = client.get(f"{path}?ms=0")
    assert response.status_code == 200
    assert assert_json(response)["ms"] == 0


def test_work_io_accepts_the_maximum(client, sleeps):
    response = client.get(f"/work/io?ms={views.MAX_WORK_MS}")
    assert response.status_code == 200
    assert assert_json(response)["ms"] == 30_000
    assert sleeps == [30.0]


def test_max_work_ms_is_30_s():
    assert views.MAX_WORK_MS == 30_000


@pytest.mark.parametrize(("query", "expected"), [("ms=30000", 30_000), ("ms=0", 0), ("ms=007", 7), ("", 100)])
def test_work_ms_parses(app, query, expected):
    # The CPU endpoint's upper bound, without burning 30 s.
    with app.test_request_context(f"/work/cpu?{query}"):
        assert views.work_ms() == expected


def test_work_ms_rejects_one_past_the_maximum(app):
    with app.test_request_context("/work/cpu?ms=30001"), pytest.raises(BadParameter) as info:
        views.work_ms()
    assert info.value.parameter == "ms"


BAD_MS = [
    pytest.param("ms=-1", id="negative"),
    pytest.param("ms=1.5", id="fraction"),
    pytest.param("ms=abc", id="letters"),
    pytest.param("ms=", id="empty"),
    pytest.param("ms=30001", id="too-large"),
    pytest.param("ms=%EF%BC%91%EF%BC%92", id="fullwidth-digits"),
    pytest.param("ms=1&ms=2", id="repeated"),
    pytest.param("ms=%2B5", id="plus-sign"),
    pytest.param("ms=%205", id="leading-space"),
    pytest.param("ms=1e3", id="exponent"),
    pytest.param("ms=99999999999999999999999", id="huge"),
]


@pytest.mark.parametrize("path", ["/work/io", "/work/cpu"])
@pytest.mark.parametrize("query", BAD_MS)
def test_work_rejects_bad_ms(client, sleeps, path, query):
    response = client.get(f"{path}?{query}")
    assert response.status_code == 400
    body = assert_json(response)
    error = body["error"]
    assert error["status"] == 400
    assert error["name"] == "Bad Request"
    assert error["parameter"] == "ms"
    assert "ms" in error["message"]
    assert sleeps == []  # rejected before any work


def test_fullwidth_digits_reach_the_view_as_fullwidth(app):
    # Guard for the test above: the percent-encoded value really is "１２",
    # which str.isdigit() and int() would both accept.
    with app.test_request_context("/work/io?ms=%EF%BC%91%EF%BC%92"):
        from flask import request

        raw = request.args["ms"]
    assert raw == "\uff11\uff12"
    assert raw.isdigit() and int(raw) == 12


def test_work_io_is_get_only(client):
    assert client.post("/work/io?ms=0").status_code == 405


def test_upload_reads_the_whole_body(client):
    body = b"0123456789" * 1000
    response = client.post("/work/upload", data=body)
    assert response.status_code == 200
    payload = response.get_json()
    assert payload["bytes"] == len(body)
    assert payload["sha256"] == hashlib.sha256(body).hexdigest()
    assert payload["kind"] == "upload"


def test_upload_over_the_limit_is_413_json(client):
    response = client.post("/work/upload", data=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.get_json()["error"]["status"] == 413
