"""The app's database: SQLAlchemy 2 over psycopg 3, one engine per worker.

`init_app()` makes the engine when `create_app()` runs, and gunicorn runs
that in each worker after the fork (preload_app is off): a pool made in the
master would hand every worker copies of the same sockets.

The pool is the worker's share of the connection budget
(docs/database.md): `DATABASE_POOL_SIZE` connections, never more (no
overflow), and a request waits at most `DATABASE_POOL_TIMEOUT` for one. The
server sizes both from what one worker runs at once and puts them in the
app's environment (serving/app.py's told()), as it would for any app that
makes its own engine; it also finds this engine once the app is loaded,
counts it in the budget, pings its database for readiness, and answers a
busy pool or an unreachable database with a JSON 503 (serving/pools.py,
serving/errors.py). Connections are checked before use (pre-ping), so the
app recovers by itself when the database comes back.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, current_app, g
from sqlalchemy import DateTime, String, create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

#: The extension's key in app.extensions: the engine.
EXTENSION = "database"


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


def pool_timeout(environ=os.environ) -> int:
    """The longest a request waits for a free connection, as the server set it, s."""
    return int(environ.get("DATABASE_POOL_TIMEOUT", "5"))


def init_app(app: Flask) -> bool:
    """The engine and the per-request session; False (and nothing done)
    when no database is configured."""
    url = database_url(app.config)
    if url is None:
        return False
    app.extensions[EXTENSION] = create_engine(
        url, pool_size=pool_size(), max_overflow=0, pool_timeout=pool_timeout(), pool_pre_ping=True
    )
    app.teardown_appcontext(close_session)
    return True


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
