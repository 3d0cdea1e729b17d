"""The request id (serving/request_id.py): nginx's X-Request-ID kept when well
formed, replaced when not, before the app sees it; on the log records of its
request and in every JSON error body; never set as a response header (nginx
sets it). The app is served as gunicorn serves it: inside the server's
middleware (serving/middleware.py)."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest
from flask import jsonify, request
from werkzeug.test import Client

from serving import request_id, settings
from serving.jsonlog import REQUEST_ID_ATOM, AccessJsonFormatter, JsonFormatter
from serving.middleware import wrap

pytestmark = pytest.mark.unit

GENERATED = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("app.test_request_id")


@pytest.fixture
def id_app(app):
    """A client of the app as gunicorn serves it, with two routes of its own."""

    @app.get("/_test/id")
    def show_id():
        log.info("serving the id")
        return jsonify(header=request.headers.get("X-Request-ID"), current=request_id.current())

    @app.get("/_test/boom")
    def boom():
        raise RuntimeError("boom-detail")

    return Client(wrap(app, settings.load({}, cpus=1)))


def get_id(client, sent: str | None) -> str:
    response = client.get("/_test/id", headers={} if sent is None else {"X-Request-ID": sent})
    assert response.status_code == 200
    assert "X-Request-ID" not in response.headers  # nginx sets it, once
    body = response.get_json()
    assert body["header"] == body["current"]  # what the app reads is what the logs carry
    return body["header"]


@pytest.mark.parametrize(
    "sent",
    ["abcdefgh", "x" * 128, "trace-1700000000.123_A-b", "0123456789abcdef0123456789abcdef", "........"],
)
def test_a_well_formed_id_is_kept(id_app, sent):
    assert get_id(id_app, sent) == sent


@pytest.mark.parametrize(
    "sent",
    ["", "short", "abcdefg", "x" * 129, "has space!", "<script>", "abcdefgh,ijklmnop", "é" * 10, "abcd/efgh"],
)
def test_a_malformed_id_is_replaced(id_app, sent):
    made = get_id(id_app, sent)
    assert GENERATED.fullmatch(made) and made != sent


def test_a_missing_id_is_made_and_differs_per_request(id_app):
    client = id_app
    first, second = get_id(client, None), get_id(client, None)
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second)
    assert first != second


def test_the_log_records_of_a_request_carry_its_id(id_app, caplog):
    client = id_app
    with caplog.at_level(logging.INFO, logger="app.test_request_id"):
        get_id(client, "first-request-id")
        made = get_id(client, "bad id")
        log.info("outside any request")
    served = [r for r in caplog.records if r.getMessage() == "serving the id"]
    assert [r.request_id for r in served] == ["first-request-id", made]
    (outside,) = [r for r in caplog.records if r.getMessage() == "outside any request"]
    assert outside.request_id is None


@pytest.mark.parametrize(
    ("path", "status"),
    [("/no/such/page", 404), ("/work/io?ms=abc", 400), ("/_test/boom", 500)],
)
def test_every_json_error_names_the_request(id_app, path, status):
    client = id_app
    kept = client.get(path, headers={"X-Request-ID": "error-request-1"})
    assert kept.status_code == status
    assert kept.get_json()["error"]["request_id"] == "error-request-1"
    assert "X-Request-ID" not in kept.headers
    made = client.get(path).get_json()["error"]["request_id"]
    assert GENERATED.fullmatch(made)


def test_405_names_the_request_and_keeps_allow(id_app):
    response = id_app.post("/healthz", headers={"X-Request-ID": "method-not-allowed"})
    assert response.status_code == 405 and "GET" in response.headers["Allow"]
    assert response.get_json()["error"] == {
        "status": 405,
        "name": "Method Not Allowed",
        "message": "The method is not allowed for the requested URL.",
        "request_id": "method-not-allowed",
    }


def test_the_traceback_of_an_unhandled_error_is_logged_with_the_id(id_app, caplog):
    with caplog.at_level(logging.ERROR):
        response = id_app.get("/_test/boom", headers={"X-Request-ID": "boom-request-1"})
    assert response.get_json()["error"]["request_id"] == "boom-request-1"
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.request_id == "boom-request-1"
    assert isinstance(record.exc_info[1], RuntimeError)


def test_the_record_factory_is_installed_once(app):
    request_id.install_log_record_factory()
    factory = logging.getLogRecordFactory()
    wrap(app, settings.load({}, cpus=1))
    request_id.install_log_record_factory()
    assert logging.getLogRecordFactory() is factory


def test_the_app_alone_names_no_request_it_was_not_given(app):
    """Served without the server's middleware (Flask's test client), the app
    invents no id: the server's is the one."""
    client = app.test_client()
    assert "request_id" not in client.get("/no/such/page").get_json()["error"]
    sent = client.get("/no/such/page", headers={"X-Request-ID": "given-by-nginx"}).get_json()
    assert sent["error"]["request_id"] == "given-by-nginx"


# --- the JSON formatters, on records made here -------------------------------------


def test_json_formatter_fields_and_traceback_on_one_line():
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.getLogger("app.somewhere").makeRecord(
            "app.somewhere", logging.ERROR, __file__, 1, "failed %s", ("twice",), sys.exc_info()
        )
    record.request_id = "formatter-test-1"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert data["time"].endswith("+00:00") and "T" in data["time"]
    assert (data["level"], data["logger"], data["message"]) == ("error", "app.somewhere", "failed twice")
    assert data["request_id"] == "formatter-test-1"
    assert data["traceback"].startswith("Traceback (most recent call last):")
    assert data["traceback"].rstrip().endswith("ValueError: bad value")
    assert "exc_info" not in data


def test_access_formatter_reads_gunicorns_atoms():
    from gunicorn.glogging import SafeAtoms

    atoms = SafeAtoms(
        {
            "m": "GET",
            "U": '/a "quoted" path',
            "s": "404",
            "L": "0.012345",
            "{x-request-id}i": "as-the-client-sent-it",
            REQUEST_ID_ATOM: "as-the-server-checked-it",
        }
    )
    record = logging.getLogger("gunicorn.access").makeRecord(
        "gunicorn.access", logging.INFO, __file__, 1, "%(m)s %(U)s", (atoms,), None
    )
    data = json.loads(AccessJsonFormatter().format(record))
    assert data["method"] == "GET" and data["path"] == '/a "quoted" path'
    assert data["status"] == 404 and data["duration"] == pytest.approx(0.012345)
    assert data["request_id"] == "as-the-server-checked-it"  # the one the app's lines carry
