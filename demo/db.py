"""The app's database: SQLAlchemy 2 over psycopg 3, one engine per worker.

`init_app()` makes the engine when `create_app()` runs, and gunicorn runs
that in each worker after the fork (preload_app is off): a pool made in the
master would hand every worker copies of the same sockets.

The pool is the worker's share of the connection budget
(docs/database.md): `DATABASE_POOL_SIZE` connections, which the server sizes
from what one worker runs at once (1 for sync, the threads for gthread, a
bounded default for gevent: serving/settings.py) and tells the app in its
environment (serving/app.py's told()), and never more (max_overflow 0). A request that finds them all
busy waits at most DATABASE_POOL_TIMEOUT, then gets a JSON 503 with
Retry-After, as does one that cannot reach the database within
DATABASE_CONNECT_TIMEOUT: never a 500, and never a worker held until
gunicorn's timeout. Connections are checked before use (pre-ping), so the
app recovers by itself when the database comes back.

Readiness (/readyz) pings the database on a connection of its own, with a
short timeout, so that a busy pool is not taken for a database that is down.
Liveness (/healthz) does not: an outage must not restart the app.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, current_app, g
from sqlalchemy import DateTime, String, create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from demo.errors import error_body

#: The extension's key in app.extensions: the engine, for whoever serves the
#: app (the connection budget check reads the pool through it).
EXTENSION = "database"
#: How long a readiness ping may take, s.
PING_TIMEOUT = 2
#: What a 503 tells the client to wait before trying again, s.
RETRY_AFTER = 1


class Base(DeclarativeBase):
    pass


class Item(Base):
    """The demonstration's one table (migrations: demo/migrations/versions/)."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(UTC))


def database_url(config) -> object | None:
    """The URL, or None without a database. It carries no password: libpq
    finds it in its password file, which the server writes from the secret."""
    if not config["DATABASE_URL"]:
        return None
    return make_url(config["DATABASE_URL"])


def pool_size(environ=os.environ) -> int:
    """Connections per worker, as the server sized them; 1 where nothing did."""
    return int(environ.get("DATABASE_POOL_SIZE", "1"))


def init_app(app: Flask) -> bool:
    """The engine, the per-request session, readiness and the 503s; False
    (and nothing done) when no database is configured."""
    url = database_url(app.config)
    if url is None:
        return False
    connect_args = {"connect_timeout": app.config["DATABASE_CONNECT_TIMEOUT"]}
    engine = create_engine(
        url,
        pool_size=pool_size(),
        max_overflow=0,
        pool_timeout=app.config["DATABASE_POOL_TIMEOUT"],
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    app.extensions[EXTENSION] = engine
    # A connection of its own each time, with its own short timeout.
    pinger = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": PING_TIMEOUT})
    app.config["READINESS_CHECKS"]["database"] = lambda: ping(pinger)
    app.teardown_appcontext(close_session)

    @app.errorhandler(PoolTimeout)
    def pool_exhausted(exc: PoolTimeout):
        return unavailable("every database connection of this worker is busy; try again")

    @app.errorhandler(DBAPIError)
    def database_error(exc: DBAPIError):
        if not exc.connection_invalidated and not _unreachable(exc):
            raise exc  # a bug, not an outage: the generic 500
        return unavailable("the database cannot be reached; try again")

    return True


def _unreachable(exc: DBAPIError) -> bool:
    from psycopg import OperationalError

    return isinstance(exc.orig, OperationalError)


def unavailable(message: str):
    response, status = error_body(503, "Service Unavailable", message)
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response, status


def ping(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar() == 1


def engine() -> Engine:
    return current_app.extensions[EXTENSION]


def session() -> Session:
    """This request's session, made on first use, closed when it ends."""
    if "db_session" not in g:
        g.db_session = Session(engine())
    return g.db_session


def close_session(exc: BaseException | None) -> None:
    made = g.pop("db_session", None)
    if made is not None:
        made.close()
