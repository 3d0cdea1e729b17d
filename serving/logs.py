"""How gunicorn and the app log: gunicorn's `logconfig_dict`, built here.

LOG_FORMAT=json (the default) makes every event one JSON line: gunicorn's
error log, its access log (GUNICORN_ACCESS_LOG), the app's loggers and the
tracebacks of unhandled errors (in the `traceback` field). Every line has
`time` (ISO 8601, UTC), `level`, `logger`, `message` and `request_id`;
nginx's access log has the same but `message` (docs/observability.md).
LOG_FORMAT=text keeps gunicorn's plain lines.

Standard library and gunicorn only: serving.gunicorn_conf imports this in
the master, before gevent's worker monkey-patches. The JSON formatters
(serving/jsonlog.py, python-json-logger) are named by dotted string, so that
logging.config imports them when it builds the handlers.
"""

from __future__ import annotations

import logging.config

from gunicorn import glogging

#: gunicorn's own plain format (gunicorn.glogging.Logger), kept by LOG_FORMAT=text.
TEXT_FORMAT = glogging.Logger.error_fmt
TEXT_DATEFMT = glogging.Logger.datefmt


def logconfig_dict(log_format: str, loglevel: str, access_log: bool) -> dict[str, object]:
    """The dictConfig gunicorn applies in the master (workers inherit it).

    gunicorn.error's level is left to gunicorn (GUNICORN_LOG_LEVEL, or
    --log-level), which sets it before applying this; the root logger, which
    the app's loggers (`app.*`) reach, gets the same level."""
    if log_format == "json":
        formatters = {
            "default": {"()": "serving.jsonlog.JsonFormatter"},
            "access": {"()": "serving.jsonlog.AccessJsonFormatter"},
        }
    else:
        formatters = {
            "default": {"format": TEXT_FORMAT, "datefmt": TEXT_DATEFMT},
            "access": {"format": glogging.Logger.access_fmt},
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
            # stdout, as gunicorn's own access log with `--access-logfile -`.
            "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
        },
        "root": {"level": loglevel.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["access"] if access_log else [],
                "propagate": False,
            },
        },
    }


def configure_standalone(log_format: str, loglevel: str) -> None:
    """The same root logger for a process gunicorn does not configure (the
    metrics server, serving/metrics_server.py)."""
    config = logconfig_dict(log_format, loglevel, access_log=False)
    config["loggers"] = {}
    logging.config.dictConfig(config)


class Logger(glogging.Logger):
    """gunicorn's logger, building the access log only when it is on.

    With `logconfig_dict` set, gunicorn counts its access log as enabled
    whatever GUNICORN_ACCESS_LOG says, and would gather every request's log
    atoms (all its headers and WSGI environ) for a logger with no handler."""

    @property
    def access_log_enabled(self) -> bool:
        return self.cfg.accesslog is not None

    def access(self, resp, req, environ, request_time) -> None:
        if self.cfg.accesslog is not None:
            super().access(resp, req, environ, request_time)
