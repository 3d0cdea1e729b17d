"""Errors leave the server as JSON, for what the app does not answer itself
(serving/errors.py, serving/middleware.py); an app's own error pages stay
its own; and ProxyFix trusts exactly one hop."""

from __future__ import annotations

import io
import logging

import pytest
from flask import Flask, jsonify, request
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Response

from serving import settings
from serving.app import answer_errors_in_json
from serving.middleware import MAX_BODY_BYTES, wrap

pytestmark = pytest.mark.unit


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    text = response.get_data(as_text=True)
    assert "<html" not in text.lower() and "<!doctype" not in text.lower()
    error = response.get_json()["error"]
    assert error["status"] == status
    assert isinstance(error["name"], str) and error["name"]
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_404(client):
    error = assert_json_error(client.get("/no/such/page"), 404)
    assert error["name"] == "Not Found"


def test_405_keeps_allow(client):
    response = client.post("/")
    error = assert_json_error(response, 405)
    assert error["name"] == "Method Not Allowed"
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed
    assert "POST" not in allowed


@pytest.fixture
def echo_body_app(app):
    """The app, with a view that reads its body, inside the server's layers."""

    @app.post("/_test/body")
    def read_body():
        return jsonify(size=len(request.get_data()))

    return wrap(app, settings.load({}, cpus=1))


def test_413_over_the_body_limit(echo_body_app):
    client = Client(echo_body_app)
    limit = MAX_BODY_BYTES
    assert limit == 1024 * 1024
    error = assert_json_error(client.post("/_test/body", data=b"x" * (limit + 1)), 413)
    assert error["name"] == "Request Entity Too Large"


def test_body_at_the_limit_is_accepted(echo_body_app):
    client = Client(echo_body_app)
    limit = MAX_BODY_BYTES
    response = client.post("/_test/body", data=b"x" * limit)
    assert response.status_code == 200
    assert response.get_json() == {"size": limit}


def post_chunked(app, path: str, body: bytes):
    """POST `body` of unknown length (Transfer-Encoding: chunked), as a WSGI
    server hands it over: no CONTENT_LENGTH, the input terminated."""
    environ = EnvironBuilder(path=path, method="POST", input_stream=io.BytesIO(body)).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True})
    return Response.from_app(app, environ)


@pytest.mark.parametrize("size", [0, 1000, MAX_BODY_BYTES])
def test_a_chunked_body_up_to_the_limit_reaches_the_view_whole(echo_body_app, size):
    response = post_chunked(echo_body_app, "/_test/body", b"x" * size)
    assert response.status_code == 200
    assert response.get_json() == {"size": size}


def test_a_chunked_body_over_the_limit_is_a_413_not_cut_silently(echo_body_app):
    # Werkzeug alone would hand the view the first MAX_CONTENT_LENGTH bytes.
    response = post_chunked(echo_body_app, "/_test/body", b"x" * (2 * MAX_BODY_BYTES))
    assert_json_error(response, 413)


def test_500_is_json_without_traceback_and_is_logged(app, caplog):
    @app.get("/_test/boom")
    def boom():
        raise RuntimeError("secret-internal-detail")

    with caplog.at_level(logging.ERROR, logger=app.logger.name):
        response = app.test_client().get("/_test/boom")
    error = assert_json_error(response, 500)
    assert error["name"] == "Internal Server Error"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert "secret-internal-detail" not in text
    assert "RuntimeError" not in text
    logged = [r for r in caplog.records if r.name == app.logger.name and r.exc_info]
    assert len(logged) == 1
    assert isinstance(logged[0].exc_info[1], RuntimeError)
    assert str(logged[0].exc_info[1]) == "secret-internal-detail"


def test_http_exception_raised_by_a_view_is_json(app):
    from flask import abort

    @app.get("/_test/forbidden")
    def forbidden():
        abort(403)

    assert_json_error(app.test_client().get("/_test/forbidden"), 403)


# --- an app's own error pages ------------------------------------------------


@pytest.fixture
def own_pages_app():
    """An app with its own HTML 404 and 500 pages, as many apps have."""
    own = Flask("own_pages")

    @own.errorhandler(404)
    def not_found(exc):
        return "<!doctype html><h1>Our own 404</h1>", 404

    @own.errorhandler(500)
    def server_error(exc):
        return "<!doctype html><h1>Our own 500</h1>", 500

    @own.get("/boom")
    def boom():
        raise RuntimeError("own")

    @own.get("/forbidden")
    def forbidden():
        from flask import abort

        abort(403)

    answer_errors_in_json(own)
    return Client(wrap(own, settings.load({}, cpus=1)))


def test_an_app_that_renders_its_own_404_and_500_keeps_them(own_pages_app):
    for path, status in (("/nope", 404), ("/boom", 500)):
        response = own_pages_app.get(path)
        assert response.status_code == status
        assert response.get_data(as_text=True).startswith("<!doctype html>")


def test_the_errors_an_app_has_no_page_for_are_json(own_pages_app):
    assert_json_error(own_pages_app.get("/forbidden"), 403)
    # The server's own answers, before the app is asked.
    assert_json_error(own_pages_app.post("/healthz"), 405)
    assert_json_error(own_pages_app.post("/boom", data=b"x" * (MAX_BODY_BYTES + 1)), 413)


def test_an_app_handler_for_every_http_error_is_left_in_place():
    own = Flask("own_handler")

    @own.errorhandler(Exception)
    def everything(exc):
        return "handled by the app", 418

    answer_errors_in_json(own)
    assert Client(wrap(own, settings.load({}, cpus=1))).get("/nope").status_code == 418


def test_a_plain_wsgi_app_that_crashes_before_answering_is_a_json_500(caplog):
    def crashing(environ, start_response):
        raise RuntimeError("plain-secret")

    with caplog.at_level(logging.ERROR, logger="serving.middleware"):
        response = Client(wrap(crashing, settings.load({}, cpus=1))).get("/", headers={"X-Request-ID": "crash-000001"})
    error = assert_json_error(response, 500)
    assert error["request_id"] == "crash-000001"
    assert "plain-secret" not in response.get_data(as_text=True)
    assert any(r.exc_info and str(r.exc_info[1]) == "plain-secret" for r in caplog.records)


# --- ProxyFix -----------------------------------------------------------------

NGINX = "172.18.0.5"  # the peer gunicorn sees: nginx


@pytest.fixture
def echo_client(app, served):
    """The app as gunicorn serves it: ProxyFix is the server's (serving/middleware.py)."""

    @app.get("/_test/echo")
    def echo():
        return jsonify(
            remote_addr=request.remote_addr,
            scheme=request.scheme,
            host=request.host,
            url=request.url,
        )

    return served()


def echo(client, headers=None) -> dict:
    response = client.get("/_test/echo", headers=headers or {}, environ_base={"REMOTE_ADDR": NGINX})
    assert response.status_code == 200
    return response.get_json()


def test_without_forwarded_headers_the_peer_is_the_client(echo_client):
    body = echo(echo_client)
    assert body["remote_addr"] == NGINX
    assert body["scheme"] == "http"
    assert body["host"] == "localhost"


def test_proxyfix_follows_one_hop(echo_client):
    body = echo(
        echo_client,
        {
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "example.com",
        },
    )
    assert body["remote_addr"] == "203.0.113.7"
    assert body["scheme"] == "https"
    assert body["host"] == "example.com"
    assert body["url"] == "https://example.com/_test/echo"


def test_proxyfix_trusts_only_the_last_forwarded_for(echo_client):
    # A client sent its own X-Forwarded-For; nginx appended the real address.
    body = echo(echo_client, {"X-Forwarded-For": "198.51.100.66, 203.0.113.7"})
    assert body["remote_addr"] == "203.0.113.7"


def test_proxyfix_trusts_only_the_last_forwarded_proto_and_host(echo_client):
    body = echo(
        echo_client,
        {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "evil.example, example.com"},
    )
    assert body["scheme"] == "http"
    assert body["host"] == "example.com"
