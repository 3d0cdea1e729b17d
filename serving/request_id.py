"""The request id: nginx's X-Request-ID, or one made here, on every request.

nginx sends X-Request-ID on every request it proxies (and answers with it).
The server keeps it when it is well formed (8 to 128 of `A-Z a-z 0-9 . _ -`)
and otherwise puts one of its own (uuid4 hex) in the request's headers
before the app sees it, so that a request reaching gunicorn some other way
still has one. The app reads it as the header it is (serving/errors.py puts it
in every JSON error body); nothing of this package is imported there.

While the request is served it is also this thread's or greenlet's
`current()`, which every log record made meanwhile carries (`request_id`),
and it is in the WSGI environ for gunicorn's access log. The server sets no
X-Request-ID response header: nginx sets it on every response, and a second
one would duplicate it.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

#: The header, as the WSGI environ names it.
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
VALID = re.compile(r"[A-Za-z0-9._-]{8,128}")

# Per thread under gthread, per greenlet under gevent (each has its own context).
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def from_header(value: str | None) -> str:
    """`value` when it is a well-formed request id, a new one otherwise."""
    if value is not None and VALID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current() -> str | None:
    """The id of the request being served here, or None outside a request."""
    return _current.get()


class RequestIdMiddleware:
    """Gives every request a well-formed X-Request-ID before the app runs."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        request_id = environ[ENVIRON_KEY] = from_header(environ.get(ENVIRON_KEY))
        token = _current.set(request_id)
        try:
            return self.app(environ, start_response)
        finally:
            # What is logged while the body is sent (after this returns) has
            # no id; gunicorn's access log reads it from the environ instead.
            _current.reset(token)


def _record_factory(previous):
    def make(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _current.get()
        return record

    make.request_id_factory = True
    return make


def install_log_record_factory() -> None:
    """Every log record made in this process carries `request_id`: the
    request's while one is served, None otherwise. Installed once, however
    often it is called."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "request_id_factory", False):
        logging.setLogRecordFactory(_record_factory(factory))
