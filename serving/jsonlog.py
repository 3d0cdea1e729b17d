"""The JSON log formatters (python-json-logger) serving/logs.py names by dotted
string: one JSON object per event, on one line.

logging.config imports this module in the gunicorn master too, and so
python-json-logger: pure Python, with no lock or thread made at import, it is
safe there before gevent patches. Nothing else may be imported here (no
Flask): the request id comes as a record attribute (serving/request_id.py
sets it in the workers).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

#: The fields every line has, in this order; nginx's access log has them all
#: but `message` (nginx/snippets/access-log.conf).
FIELDS = ("time", "level", "logger", "message", "request_id")

#: The access log's atom for the request id: the X-Request-ID header as the
#: WSGI environ holds it once serving/request_id.py has checked it (gunicorn
#: names environ atoms by their lower-cased key).
REQUEST_ID_ATOM = "{http_x_request_id}e"


def iso_time(created: float) -> str:
    """2026-01-02T03:04:05.678+00:00: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(_BaseJsonFormatter):
    """time, level, logger, message, request_id (null outside a request), pid;
    then any `extra=` fields; a traceback in the single field `traceback`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"exc_info": "traceback"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request_id", "taskName"])
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = iso_time(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data["request_id"] = getattr(record, "request_id", None)
        log_data["pid"] = record.process
        super().add_fields(log_data, record, message_dict)


class AccessJsonFormatter(JsonFormatter):
    """gunicorn's access log: its record's args are the atoms of the request
    (gunicorn.glogging.Logger.atoms), from which come method, path, status,
    duration (seconds) and the request id (serving/request_id.py made one if
    nginx sent none or a malformed one)."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        atoms = record.args
        if not isinstance(atoms, Mapping):
            return
        log_data["method"] = _atom(atoms, "m")
        log_data["path"] = _atom(atoms, "U")
        log_data["status"] = _number(int, _atom(atoms, "s"))
        log_data["duration"] = _number(float, _atom(atoms, "L"))
        log_data["request_id"] = _atom(atoms, REQUEST_ID_ATOM)


def _atom(atoms: Mapping[str, Any], key: str) -> Any:
    """An atom, None for gunicorn's "-" (missing). gunicorn escapes double
    quotes for its quoted text format; JSON needs them back."""
    value = atoms.get(key)
    if value in (None, "-"):
        return None
    return value.replace('\\"', '"') if isinstance(value, str) else value


def _number(kind: type, value: Any) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return value
