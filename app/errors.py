"""Every error leaves the app as JSON: no HTML error page, no traceback.
Each body names the request's id, as nginx's own error bodies do, so that a
client's report leads to the log lines: the X-Request-ID header, which the
server (serving/request_id.py) makes sure every request carries, well formed."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


def error_body(status: int, name: str, message: str, **details: object):
    error = {"status": status, "name": name, "message": message, **details}
    request_id = request.headers.get(REQUEST_ID_HEADER)
    if request_id is not None:
        error["request_id"] = request_id
    return jsonify({"error": error}), status


class BadParameter(HTTPException):
    """A 400 that names the offending query parameter."""

    code = 400

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(description=message)
        self.parameter = parameter


def register(app: Flask) -> None:
    @app.errorhandler(BadParameter)
    def bad_parameter(exc: BadParameter):
        return error_body(400, exc.name, exc.description, parameter=exc.parameter)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = error_body(exc.code or 500, exc.name, exc.description or exc.name)[0]
        # Keep what the exception says about the response (e.g. Allow on 405).
        for header, value in exc.get_headers():
            if header.lower() != "content-type":
                response.headers[header] = value
        return response, exc.code

    @app.errorhandler(Exception)
    def unhandled(exc: Exception):
        # The traceback goes to the log, never to the client.
        log.exception("unhandled exception")
        generic = InternalServerError()
        return error_body(500, generic.name, "The server hit an unexpected error.")
