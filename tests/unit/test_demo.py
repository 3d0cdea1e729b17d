"""The demonstration endpoints (demo/demo.py), through Flask's test client."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from demo import demo
from demo.errors import BadParameter
from demo.factory import create_app
from tests.unit.conftest import served_by_the_server

pytestmark = pytest.mark.unit

LIMIT = 1000  # DEMO_MAX_WORK_MS's default


@pytest.fixture
def sleeps(monkeypatch):
    """Replace time.sleep as demo.demo sees it; returns the requested durations in seconds."""
    calls: list[float] = []
    monkeypatch.setattr(demo.time, "sleep", calls.append)
    return calls


def assert_json(response):
    assert response.mimetype == "application/json", response.data[:200]
    return response.get_json()


# --- the switch ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/work/io?ms=0", "/work/cpu?ms=0", "/client"])
def test_demo_endpoints_are_off_with_the_switch(app, monkeypatch, path):
    monkeypatch.setenv("DEMO_ENDPOINTS", "false")
    client = served_by_the_server(create_app())
    response = client.get(path)
    assert response.status_code == 404
    assert assert_json(response)["error"]["status"] == 404
    assert client.get("/healthz").status_code == 200


def test_the_cap_follows_the_setting(app, monkeypatch, sleeps):
    monkeypatch.setenv("DEMO_MAX_WORK_MS", "50")
    client = served_by_the_server(create_app())
    assert client.get("/work/io?ms=50").status_code == 200
    response = client.get("/work/io?ms=51")
    assert response.status_code == 400
    assert "from 0 to 50" in response.get_json()["error"]["message"]


# --- /work/io and /work/cpu ---------------------------------------------------


def test_work_io_waits_about_ms_of_wall_time(client):
    before = time.monotonic()
    response = client.get("/work/io?ms=30")
    elapsed = time.monotonic() - before
    assert response.status_code == 200
    body = assert_json(response)
    assert set(body) == {"worker", "started_at", "finished_at", "kind", "ms"}
    assert body["kind"] == "io"
    assert body["ms"] == 30
    assert 0.025 <= elapsed < 2.0
    # The server's own timestamps frame the wait.
    assert 0.025 <= body["finished_at"] - body["started_at"] < 2.0
    assert abs(body["started_at"] - time.time()) < 60


def test_worker_id_is_stable_per_process_and_is_not_the_pid(client):
    ids = {assert_json(client.get("/work/io?ms=0"))["worker"] for _ in range(3)}
    assert len(ids) == 1
    (worker,) = ids
    assert str(os.getpid()) not in worker
    assert len(worker) == 12


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
    assert set(body) == {"worker", "started_at", "finished_at", "kind", "ms", "spins"}
    assert body["kind"] == "cpu"
    assert body["ms"] == 30
    assert isinstance(body["spins"], int) and body["spins"] > 0
    assert cpu >= 0.03
    assert wall < 5.0
    # The server's own timestamps frame the burn: 30 ms of CPU take 30 ms of wall time at least.
    assert 0.03 <= body["finished_at"] - body["started_at"] < 5.0


def test_work_cpu_does_not_sleep(client, sleeps):
    assert assert_json(client.get("/work/cpu?ms=5"))["kind"] == "cpu"
    assert sleeps == []


def test_work_io_default_ms(client, sleeps):
    body = assert_json(client.get("/work/io"))
    assert body["ms"] == 100
    assert sleeps == [0.1]


@pytest.mark.parametrize("path", ["/work/io", "/work/cpu"])
def test_work_accepts_zero(client, sleeps, path):
    response = client.get(f"{path}?ms=0")
    assert response.status_code == 200
    assert assert_json(response)["ms"] == 0


def test_work_io_accepts_the_maximum(client, sleeps):
    response = client.get(f"/work/io?ms={LIMIT}")
    assert response.status_code == 200
    assert sleeps == [LIMIT / 1000]


@pytest.mark.parametrize(("query", "expected"), [(f"ms={LIMIT}", LIMIT), ("ms=0", 0), ("ms=007", 7), ("", 100)])
def test_work_ms_parses(app, query, expected):
    with app.test_request_context(f"/work/cpu?{query}"):
        assert demo.work_ms() == expected


def test_work_ms_rejects_one_past_the_maximum(app):
    with app.test_request_context(f"/work/cpu?ms={LIMIT + 1}"), pytest.raises(BadParameter) as info:
        demo.work_ms()
    assert info.value.parameter == "ms"


BAD_MS = [
    pytest.param("ms=-1", id="negative"),
    pytest.param("ms=1.5", id="fraction"),
    pytest.param("ms=abc", id="letters"),
    pytest.param("ms=", id="empty"),
    pytest.param(f"ms={LIMIT + 1}", id="too-large"),
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
    error = assert_json(response)["error"]
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


# --- /client ------------------------------------------------------------------


def test_client_reports_what_proxyfix_sees(served):
    response = served().get(
        "/client",
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.com"},
        environ_base={"REMOTE_ADDR": "172.18.0.5"},
    )
    assert assert_json(response) == {"remote_addr": "203.0.113.7", "scheme": "https", "host": "example.com"}


def test_client_trusts_nginx_alone_one_hop(served):
    """nginx decided who the client is and said so last (behind named proxies
    too: nginx/docker-entrypoint.d/19-trusted-proxies.sh); what sits further
    left is never the app's to believe."""
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 198.51.100.2", "X-Forwarded-Proto": "http, https, http"}
    body = assert_json(served().get("/client", headers=headers, environ_base={"REMOTE_ADDR": "172.18.0.5"}))
    assert body["remote_addr"] == "198.51.100.2"
    assert body["scheme"] == "http"
