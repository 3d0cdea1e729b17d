"""LOG_FORMAT against a real gunicorn (serving/logs.py, serving/jsonlog.py): one JSON
line per event from gunicorn, its access log and the app, with the fields
nginx's access log shares; tracebacks in one field; the request id on the
lines of its request, under threads and greenlets alike; `text` keeps
gunicorn's plain lines."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.unit

TEST_APP = "tests.unit.testapp:application"
SHARED_FIELDS = ("time", "level", "logger", "message", "request_id")
LEVELS = {"debug", "info", "warning", "error", "critical"}
#: gunicorn's own plain line: `[2026-01-02 03:04:05 +0000] [pid] [INFO] message`.
TEXT_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")


def json_lines(text: str) -> list[dict]:
    """Every line of `text` as JSON: fails on the first line that is not."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}\n{text}")
    return records


def is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def check_shared_fields(record: dict) -> None:
    assert list(record)[: len(SHARED_FIELDS)] == list(SHARED_FIELDS), record
    when = datetime.fromisoformat(record["time"])
    assert when.utcoffset() == timedelta(0), record
    assert record["level"] in LEVELS, record
    assert isinstance(record["logger"], str) and isinstance(record["message"], str), record
    assert record["request_id"] is None or isinstance(record["request_id"], str), record


def test_every_line_is_json_with_the_shared_fields(gunicorn, helpers):
    with gunicorn(TEST_APP, WEB_CONCURRENCY="2", GUNICORN_ACCESS_LOG="true") as run:
        assert run.get("/", {"X-Request-ID": "index-request-1"})[0] == 200
        status, body = run.get("/_test/boom", {"X-Request-ID": "boom-request-1"})
        assert status == 500 and body["error"]["request_id"] == "boom-request-1"
        assert "boom-detail" not in json.dumps(body)
        assert run.get("/_test/log/a?ms=0", {"X-Request-ID": "log-line-check"})[0] == 200
        assert run.get("/_test/log/b?ms=0", {"X-Request-ID": "bad id"})[0] == 200
        helpers.stop(run.proc)  # every line written, the shutdown's too
    assert run.proc.returncode == 0
    stderr = json_lines(run.log.read_text())
    stdout = json_lines(run.stdout.read_text())

    # The effective configuration's line keeps its shape: scripts grep it.
    (config,) = [r for r in stderr if r.get("event") == "gunicorn.config"]
    assert list(config)[0] == "event" and "time" not in config and config["workers"] == 2
    events = [r for r in stderr if r is not config]
    for record in events + stdout:
        check_shared_fields(record)
    assert {r["logger"] for r in events} >= {"gunicorn.error", "demo.factory", "tests.unit.testapp"}
    assert any(r["message"].startswith("Booting worker") and r["request_id"] is None for r in events)

    # The unhandled error: one line, the traceback in one field.
    (error,) = [r for r in events if r["logger"] == "demo.factory"]
    assert (error["level"], error["message"], error["request_id"]) == (
        "error",
        "Exception on /_test/boom [GET]",
        "boom-request-1",
    )
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom-detail" in error["traceback"]
    assert not any("Traceback" in r["message"] for r in events)

    # The app's own lines carry the id of their request; a malformed id was replaced.
    app_lines = {r["message"]: r["request_id"] for r in events if r["logger"] == "tests.unit.testapp"}
    assert app_lines["tag=a before"] == app_lines["tag=a after"] == "log-line-check"
    made = app_lines["tag=b before"]
    assert re.fullmatch(r"[0-9a-f]{32}", made) and app_lines["tag=b after"] == made

    # The access log (stdout): method, path, status, duration, and the same ids.
    assert {r["logger"] for r in stdout} == {"gunicorn.access"}
    access = {r["path"]: r for r in stdout if r["path"] != "/" or r["request_id"] == "index-request-1"}
    boom = access["/_test/boom"]
    assert (boom["method"], boom["status"], boom["request_id"]) == ("GET", 500, "boom-request-1")
    assert isinstance(boom["duration"], float) and 0 <= boom["duration"] < 5
    assert access["/"]["status"] == 200
    assert access["/_test/log/a"]["request_id"] == "log-line-check"
    assert access["/_test/log/b"]["request_id"] == made  # the app's id, not the malformed header


def test_without_the_access_log_nothing_is_written_to_stdout(gunicorn, helpers):
    with gunicorn(TEST_APP, WEB_CONCURRENCY="1") as run:
        assert run.get("/_test/log/c?ms=0")[0] == 200
        helpers.stop(run.proc)
    assert run.stdout.read_text() == ""
    assert any(r.get("message") == "tag=c before" for r in json_lines(run.log.read_text()))


def test_text_keeps_gunicorns_plain_lines(gunicorn, helpers):
    with gunicorn(TEST_APP, WEB_CONCURRENCY="1", GUNICORN_ACCESS_LOG="true", LOG_FORMAT="text") as run:
        assert run.get("/_test/boom")[0] == 500
        helpers.stop(run.proc)
    lines = run.log.read_text().splitlines()
    (config,) = [line for line in lines if is_json(line)]
    assert json.loads(config)["event"] == "gunicorn.config"
    plain = [line for line in lines if TEXT_LINE.match(line)]
    assert any(line.endswith("[INFO] Using worker: sync") for line in plain)
    assert any(line.endswith("[ERROR] Exception on /_test/boom [GET]") for line in plain)
    # Today's traceback: lines of its own after the message.
    assert "Traceback (most recent call last):" in lines
    assert "RuntimeError: boom-detail" in lines
    (access,) = [line for line in run.stdout.read_text().splitlines() if "/_test/boom" in line]
    assert not is_json(access) and '"GET /_test/boom HTTP/1.1" 500' in access


def test_an_invalid_log_format_stops_the_start_in_one_line(helpers, env_factory):
    port = helpers.free_port()
    result = helpers.run_python(
        ["-m", "gunicorn", "-c", "python:serving.gunicorn_conf", "--bind", f"127.0.0.1:{port}"],
        env_factory(LOG_FORMAT="yaml"),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "configuration error: LOG_FORMAT='yaml' is not valid: expected one of json, text"
    ]
    assert not helpers.is_listening(port)


@pytest.mark.parametrize(
    ("worker_class", "env"),
    [("gthread", {"GUNICORN_THREADS": "4"}), ("gevent", {})],
)
def test_each_concurrent_request_logs_its_own_id(gunicorn, helpers, worker_class, env):
    """One worker, requests overlapping in its threads or greenlets: every
    line is tagged with the id of the request that logged it."""
    tags = [f"t{n}" for n in range(8)]
    answers: dict[str, tuple[int, dict]] = {}

    with gunicorn(TEST_APP, WORKER_CLASS=worker_class, WEB_CONCURRENCY="1", **env) as run:

        def get(tag: str) -> None:
            answers[tag] = run.get(f"/_test/log/{tag}?ms=200", {"X-Request-ID": f"isolation-{tag}-0000"})

        threads = [threading.Thread(target=get, args=(tag,)) for tag in tags]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        helpers.stop(run.proc)
    assert {tag: answers[tag] for tag in tags} == {
        tag: (200, {"tag": tag, "request_id": f"isolation-{tag}-0000"}) for tag in tags
    }
    lines = [r for r in json_lines(run.log.read_text()) if r.get("logger") == "tests.unit.testapp"]
    assert len(lines) == 2 * len(tags)
    for record in lines:
        tag = re.fullmatch(r"tag=(t\d) (before|after)", record["message"])[1]
        assert record["request_id"] == f"isolation-{tag}-0000", record
    # They did overlap: several requests logged "before" ere the first "after".
    order = [r["message"] for r in lines]
    first_after = next(i for i, message in enumerate(order) if message.endswith("after"))
    assert first_after >= 2, order
