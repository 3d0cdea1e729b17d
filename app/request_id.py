"""The request id: nginx's X-Request-ID, or one made here.

nginx sends X-Request-ID on every request it proxies (and answers with it).
The app keeps it when it is well formed (8 to 128 of `A-Z a-z 0-9 . _ -`)
and otherwise makes one (uuid4 hex), so that a request reaching gunicorn
some other way still has one. It lives in flask.g for the request, and goes
on every log record emitted while the request is served (the record's
`request_id`), into every JSON error body (app/errors.py) and, for gunicorn's
access log, into the WSGI environ. The app sets no X-Request-ID response
header: nginx sets it on every response, and a second one would duplicate it.
"""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, g, has_request_context, request

from app.jsonlog import ENVIRON_REQUEST_ID

HEADER = "X-Request-ID"
VALID = re.compile(r"[A-Za-z0-9._-]{8,128}")


def from_header(value: str | None) -> str:
    """`value` when it is a well-formed request id, a new one otherwise."""
    if value is not None and VALID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current() -> str | None:
    """This request's id (made on first use), or None outside a request."""
    if not has_request_context():
        return None
    request_id = g.get("request_id")
    if request_id is None:
        request_id = g.request_id = from_header(request.headers.get(HEADER))
        request.environ[ENVIRON_REQUEST_ID] = request_id
    return request_id


def _record_factory(previous):
    def make(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = current()
        return record

    make.request_id_factory = True
    return make


def install_log_record_factory() -> None:
    """Every log record made in this process carries `request_id`: the
    request's while one is served, None otherwise. Installed once, however
    many apps are created."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "request_id_factory", False):
        logging.setLogRecordFactory(_record_factory(factory))


def _assign() -> None:
    current()  # a before_request function returning a value would answer the request


def register(app: Flask) -> None:
    install_log_record_factory()
    # First of the app's before_request functions: whatever runs after it,
    # and the error handlers, find the id.
    app.before_request_funcs.setdefault(None, []).insert(0, _assign)
