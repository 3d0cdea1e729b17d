"""The server's JSON error body, the same shape nginx's own errors have
(nginx/snippets/json-errors.conf), naming the request id so that a client's
report leads to the log lines:

    {"error": {"status": 404, "name": "Not Found", "message": "...", "request_id": "..."}}

Used for what the server answers itself (serving/middleware.py: health, the
body limit, a crash before the app answers) and, for a Flask app, for the
errors it has no handler of its own for (serving/app.py), its database's
included: a pool with no free connection, or a database that cannot be
reached, is a 503 with Retry-After, never a 500 or the app's error page.
"""

from __future__ import annotations

import json
import logging
import sys
from http import HTTPStatus

from serving.request_id import ENVIRON_KEY

log = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = "The server hit an unexpected error."


def body(status: int, message: str, environ: dict | None = None, name: str | None = None) -> bytes:
    error = {"status": status, "name": name or HTTPStatus(status).phrase, "message": message}
    request_id = (environ or {}).get(ENVIRON_KEY)
    if request_id is not None:
        error["request_id"] = request_id
    return json.dumps({"error": error}).encode()


def respond(start_response, environ, status: int, message: str, headers=(), exc_info=None) -> list[bytes]:
    """Answer a WSGI request with the JSON error."""
    payload = body(status, message, environ)
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers],
        exc_info,
    )
    return [payload]


class CrashGuard:
    """An exception the app lets out before its response starts is a JSON
    500 naming the request id, the traceback in the log; once its body has
    started, the connection is closed instead (the status line is gone)."""

    def __init__(self, app, where: str = "the app") -> None:
        self.app = app
        self.where = where

    def __call__(self, environ, start_response):
        started = False

        def start(*args):
            nonlocal started
            started = True
            return start_response(*args)

        try:
            return self.app(environ, start)
        except Exception:
            log.exception("unhandled exception in %s", self.where)
            # PEP 3333: exc_info only when replacing a response already
            # started; the server raises it again if its headers are sent.
            return respond(
                start_response,
                environ,
                500,
                INTERNAL_ERROR_MESSAGE,
                exc_info=sys.exc_info() if started else None,
            )


def flask_http_error(exc):
    """A Flask app's HTTPException (404, 405, 413, ...) it has no handler for."""
    from flask import Response, request

    status = exc.code or 500
    response = Response(
        body(status, exc.description or exc.name, request.environ, name=exc.name), status, mimetype="application/json"
    )
    # Keep what the exception says about the response (Allow on a 405).
    for header, value in exc.get_headers():
        if header.lower() != "content-type":
            response.headers[header] = value
    return response


def flask_internal_error(exc):
    """A Flask app's unhandled exception: the traceback is in the log (Flask
    logged it), never in the answer."""
    from flask import Response, request

    return Response(body(500, INTERNAL_ERROR_MESSAGE, request.environ), 500, mimetype="application/json")


#: What a 503 for a busy or unreachable database tells the client to wait
#: before trying again, s.
RETRY_AFTER = 1
DATABASE_BUSY = "every database connection of this worker is busy; try again"
DATABASE_UNREACHABLE = "the database cannot be reached; try again"


def flask_unavailable(message: str):
    from flask import Response, request

    response = Response(body(503, message, request.environ), 503, mimetype="application/json")
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def flask_pool_exhausted(exc):
    """No free connection within the pool's timeout."""
    return flask_unavailable(DATABASE_BUSY)


def flask_database_error(exc):
    """SQLAlchemy's DBAPIError: an outage (the connection failed, or was lost)
    is a 503; anything else is a bug, raised on to the app's 500."""
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return flask_unavailable(DATABASE_UNREACHABLE)
    raise exc


def flask_database_unreachable(exc):
    """A driver's own OperationalError (psycopg used without SQLAlchemy)."""
    return flask_unavailable(DATABASE_UNREACHABLE)
