"""The app's own settings, read from the environment once, when the app is made.

These are what a fork configures about its app; how it is served (workers,
timeouts, proxies, logging, metrics) is the server's, in serving/settings.py.
Add yours to `VARIABLES`, then to the README's table and `.env.example` (a
unit test says when they disagree).

A bad value raises ConfigError, a ValueError whose message names the
variable: the server turns it into one line and stops the start
(serving/wsgi.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class ConfigError(ValueError):
    """An environment variable holds a value the app must not start with."""


def flag(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not valid: expected true or false")


def text(name: str, raw: str) -> str:
    return raw


def whole_number(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            raise ConfigError(f"{name}={raw!r} is not valid: expected a whole number from {low} to {high}")
        return int(raw)

    return parse


def database_url(name: str, raw: str) -> str:
    """A PostgreSQL URL SQLAlchemy can read, without a password: the password
    reaches libpq from a file (DATABASE_PASSWORD_FILE), never from here."""
    expected = (
        "expected postgresql+psycopg://USER@HOST:PORT/NAME, without its password (DATABASE_PASSWORD_FILE holds it)"
    )
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"{name}={raw!r} is not valid: {expected}") from None
    if not url.drivername.startswith("postgresql") or not (url.host or url.query.get("host")) or not url.database:
        raise ConfigError(f"{name}={raw!r} is not valid: {expected}")
    if url.password is not None:
        shown = url.render_as_string(hide_password=True)
        raise ConfigError(f"{name}={shown!r} is not valid: it holds a password; {expected}")
    return raw


@dataclass(frozen=True)
class Setting:
    """One variable: the Flask config key it fills, how to read it, its
    default, and what it means (the README's table says the same)."""

    name: str
    parse: Callable[[str, str], object]
    default: object
    meaning: str


VARIABLES: tuple[Setting, ...] = (
    Setting(
        "DEMO_ENDPOINTS",
        flag,
        True,
        "serve the demonstration endpoints (`/work/*`, `/client`, demo/demo.py); `false` in your fork",
    ),
    Setting(
        "DEMO_MAX_WORK_MS",
        whole_number(0, 59_000),
        1000,
        "most milliseconds one `/work/io` or `/work/cpu` request may ask for",
    ),
    Setting(
        "COMPOSE_PROFILES",
        text,
        "",
        "Compose's profiles (`.env`): `db` runs the bundled PostgreSQL, which `DATABASE_URL` then defaults to",
    ),
    Setting(
        "DATABASE_URL",
        database_url,
        "",
        "the database, `postgresql+psycopg://USER@HOST:PORT/NAME`, without its password; "
        "none: no database, or the bundled one with `COMPOSE_PROFILES=db` (docs/database.md)",
    ),
)

#: The bundled database (docker-compose.yml, profile `db`), as the app reaches it.
BUNDLED_DATABASE_URL = "postgresql+psycopg://app@db:5432/app"


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Every variable's value, by name: the environment's, or the default.
    SECRET_KEY is read as most apps read it, from the environment, where the
    server puts the secret file's value; the database's password reaches
    libpq from the server too (serving/app.py), never through here."""
    environ = os.environ if environ is None else environ
    values = {}
    for setting in VARIABLES:
        raw = environ.get(setting.name, "").strip()
        values[setting.name] = setting.parse(setting.name, raw) if raw else setting.default
    if not values["DATABASE_URL"] and "db" in str(values["COMPOSE_PROFILES"]).replace(" ", ",").split(","):
        values["DATABASE_URL"] = BUNDLED_DATABASE_URL
    values["SECRET_KEY"] = environ.get("SECRET_KEY") or None
    _check_work_fits(values, environ)
    return values


def _check_work_fits(values: Mapping[str, object], environ: Mapping[str, str]) -> None:
    """A request may ask for DEMO_MAX_WORK_MS of work: under a sync worker
    (whose heartbeat stops while it serves) or a gevent one (whose loop stops
    while it computes), below the seconds the server gives a worker before it
    takes it for stuck and kills it, or the longest requests would end as
    502s with their worker. The server puts both in the environment. A gthread
    worker keeps beating while its threads work: nginx's own timeout, above
    the bound of 59 s, is the limit there."""
    timeout, worker_class = environ.get("GUNICORN_TIMEOUT", ""), environ.get("WORKER_CLASS", "sync")
    if worker_class == "gthread" or not timeout.isdigit():
        return
    if values["DEMO_MAX_WORK_MS"] >= int(timeout) * 1000:  # type: ignore[operator]
        raise ConfigError(
            f"DEMO_MAX_WORK_MS={values['DEMO_MAX_WORK_MS']} is out of range: expected below the worker timeout "
            f"(GUNICORN_TIMEOUT={timeout}, {int(timeout) * 1000} ms, with WORKER_CLASS={worker_class})"
        )
