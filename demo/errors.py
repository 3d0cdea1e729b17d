"""The demonstration's own errors: a 400 that names the offending query
parameter, and the JSON body its database errors share (demo/db.py). Every
other error the demo does not answer itself, the server answers in JSON
(serving/errors.py), as it does for any app. Each body names the request
id, as nginx's own error bodies do: the X-Request-ID header, which the
server makes sure every request carries, well formed."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

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
