"""The database pools the app really opens: sized by the server where the
app leaves them to it, found once it is loaded, checked against each
worker's share, and what the connection budget, readiness and `make up`'s
line count.

Sizing (`install_sizing()`, before the app's module is imported). The server
knows what one worker runs at once, so it sizes the pools through the
libraries' own interfaces:

- Flask-SQLAlchemy: its config, `SQLALCHEMY_ENGINE_OPTIONS` and each entry
  of `SQLALCHEMY_BINDS`. Every Flask app made in this process starts with
  the server's pool options (Flask's `default_config`), and whatever pool
  options the app sets itself are laid over them key by key (its
  `config_class`): an app that sets only `pool_pre_ping` or `pool_recycle`
  keeps them and is still sized; one that sets `pool_size` keeps its own,
  and the check below decides.
- Any other engine or pool (`create_engine()`, psycopg_pool): the app reads
  DATABASE_POOL_SIZE and DATABASE_POOL_TIMEOUT from its environment, where
  the server puts them (serving/app.py's told()).

The server's options: `pool_size` the worker's share (DATABASE_POOL_SIZE: 1
for sync, the threads for gthread, a bounded default for gevent),
`max_overflow` 0, `pool_timeout` DATABASE_POOL_TIMEOUT, `pool_pre_ping` on.
The connect timeout is libpq's own PGCONNECT_TIMEOUT, which every driver on
libpq reads, so nothing driver-specific goes into the app's options.

Finding (`discover()`, once the app is loaded, before any request): the
engines of a Flask-SQLAlchemy extension by their bind names, then every
other SQLAlchemy Engine and psycopg_pool pool alive in the process (the
garbage collector's list of objects). What the app makes later, on its first
request, is not seen: docs/database.md shows the lines that size such a pool
from the environment.

Checking (`refusals()`): a pool that can open more than the worker's share at
once, or that makes a request wait for a free connection as long as
gunicorn's worker timeout or longer, stops the start with one line naming
it, its figures and the share. It never passes silently.

SQLAlchemy's pool keeps its overflow and pre-ping in attributes of its own
(`QueuePool._max_overflow`, `Pool._pre_ping`), and the merge of the app's
options relies on Flask's Config filling itself through `__setitem__`:
listed in serving/internals.py, with the test that names them when they
change.
"""

# Beyond their public API, this file relies on `Pool.__init__`,
# `Config.from_object`, `Config.from_mapping`: serving/internals.py checks
# them (at start for the worker class in use, and first in the test suite).

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from serving.settings import Settings

#: libpq's variable for its connect timeout, s.
PGCONNECT_TIMEOUT = "PGCONNECT_TIMEOUT"
#: How long a readiness ping or the budget's read of the limits may take to connect, s.
PING_TIMEOUT = 2

#: The server's own connections (readiness, the budget's read of the limits)
#: as pg_stat_activity names them, apart from the app's pools.
APPLICATION_NAME = "serving"

FLASK_SQLALCHEMY_OPTIONS = "SQLALCHEMY_ENGINE_OPTIONS"
FLASK_SQLALCHEMY_BINDS = "SQLALCHEMY_BINDS"


# --- sizing ------------------------------------------------------------------


def engine_options(settings: Settings) -> dict[str, object]:
    """The pool options the server gives a Flask-SQLAlchemy engine."""
    return {
        "pool_size": settings.database_pool_size,
        "max_overflow": 0,
        "pool_timeout": settings.database_pool_timeout,
        "pool_pre_ping": True,
    }


def sized_binds(binds: Mapping, options: Mapping[str, object]) -> dict:
    """SQLALCHEMY_BINDS with the server's options under each entry's own: a
    URL becomes `{"url": URL, **options}`, a dict keeps its keys over them."""
    return {
        key: {**options, **(value if isinstance(value, Mapping) else {"url": value})} for key, value in binds.items()
    }


def install_sizing(settings: Settings) -> None:
    """Every Flask app made in this process from now on gets the server's
    pool options under its own (see the module's docstring). Nothing is done
    where Flask is not installed."""
    try:
        from flask import Flask
        from werkzeug.datastructures import ImmutableDict
    except ImportError:
        return
    options = engine_options(settings)
    if getattr(Flask.config_class, "serving_options", None) == options:
        return
    base = getattr(Flask.config_class, "serving_base", Flask.config_class)

    class SizedConfig(base):
        """Flask's Config, laying the app's pool options over the server's."""

        serving_base = base
        serving_options = options

        def __setitem__(self, key, value):
            if key == FLASK_SQLALCHEMY_OPTIONS and isinstance(value, Mapping):
                value = {**options, **value}
            elif key == FLASK_SQLALCHEMY_BINDS and isinstance(value, Mapping):
                value = sized_binds(value, options)
            super().__setitem__(key, value)

        def update(self, *args, **kwargs):
            for key, value in dict(*args, **kwargs).items():
                self[key] = value

    Flask.config_class = SizedConfig
    Flask.default_config = ImmutableDict({**Flask.default_config, FLASK_SQLALCHEMY_OPTIONS: dict(options)})


# --- finding -----------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """One pool, as the budget and the check see it."""

    #: Who made it and how the app names it: "Flask-SQLAlchemy's bind 'audit'".
    name: str
    #: Its URL or connection string, without a password.
    url: str
    #: "postgresql", "mysql", "sqlite", ...
    backend: str
    #: The database server it connects to (host:port), or None for a file.
    server: str | None
    #: The most connections it opens at once in one worker.
    capacity: int
    #: How it got there: "pool_size 5 + max_overflow 10".
    figures: str
    #: The longest a request waits for a free connection, s (None: never waits).
    timeout: float | None
    pre_ping: bool | None
    #: Opens one connection of its own, outside the pool, with a short
    #: connect timeout (readiness, the budget's read of the limits).
    connect: Callable[[], object] = field(compare=False, repr=False)
    #: How to size it, for the refusal.
    how: str = field(default="", compare=False, repr=False)

    @property
    def counted(self) -> bool:
        """Whether it holds a database server's connections (a file does not)."""
        return self.server is not None

    def describe(self) -> str:
        return f"{self.name} ({self.url}): {self.figures}"


def per_worker_concurrency(settings: Settings) -> int:
    """What one worker runs at once: what an unbounded pool opens at most."""
    return {"sync": 1, "gthread": settings.threads, "gevent": settings.worker_connections}[settings.worker_class]


def _sqlalchemy_pool(name: str, engine, settings: Settings, how: str) -> Pool:
    from sqlalchemy import pool as pools

    url = engine.url
    backend = url.get_backend_name()
    server = None if backend == "sqlite" else f"{url.host or 'localhost'}:{url.port or _default_port(backend)}"
    pool = engine.pool
    timeout = None
    if isinstance(pool, pools.QueuePool):
        timeout = pool.timeout()
        if pool._max_overflow < 0 or pool.size() <= 0:  # max_overflow=-1 or pool_size=0: no limit
            capacity = per_worker_concurrency(settings)
            figures = (
                f"pool_size {pool.size()}, max_overflow {pool._max_overflow}, no limit: up to {capacity} "
                "(what a worker runs at once)"
            )
        else:
            capacity = pool.size() + pool._max_overflow
            figures = f"pool_size {pool.size()} + max_overflow {pool._max_overflow}"
    elif isinstance(pool, pools.NullPool):
        capacity = per_worker_concurrency(settings)
        figures = f"NullPool, a connection per request: up to {capacity} (what a worker runs at once)"
    elif isinstance(pool, (pools.StaticPool, pools.AssertionPool)):
        capacity, figures = 1, f"{type(pool).__name__}: 1"
    else:  # SingletonThreadPool: one per thread, as many threads as it keeps
        capacity = getattr(pool, "size", per_worker_concurrency(settings))
        capacity = capacity if isinstance(capacity, int) else per_worker_concurrency(settings)
        figures = f"{type(pool).__name__}: up to {capacity}"

    def connect():
        cargs, cparams = engine.dialect.create_connect_args(url)
        if backend == "postgresql":
            cparams = {**cparams, "connect_timeout": PING_TIMEOUT, "application_name": APPLICATION_NAME}
        return engine.dialect.connect(*cargs, **cparams)

    return Pool(
        name=name,
        url=url.render_as_string(hide_password=True),
        backend=backend,
        server=server,
        capacity=capacity,
        figures=figures + (f", pool_timeout {timeout:g} s" if timeout is not None else ""),
        timeout=timeout,
        pre_ping=getattr(pool, "_pre_ping", None),
        connect=connect,
        how=how,
    )


def _psycopg_pool(pool, settings: Settings) -> Pool:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(pool.conninfo)
    info.pop("password", None)
    shown = " ".join(f"{k}={v}" for k, v in info.items())
    capacity = pool.max_size if pool.max_size else per_worker_concurrency(settings)

    def connect():
        import psycopg

        return psycopg.connect(pool.conninfo, connect_timeout=PING_TIMEOUT, application_name=APPLICATION_NAME)

    return Pool(
        name=f"psycopg_pool {type(pool).__name__} {pool.name!r}",
        url=shown,
        backend="postgresql",
        server=f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}",
        capacity=capacity,
        figures=f"max_size {capacity}, timeout {pool.timeout:g} s",
        timeout=pool.timeout,
        pre_ping=None,
        connect=connect,
        how="max_size=int(os.environ['DATABASE_POOL_SIZE']), timeout=float(os.environ['DATABASE_POOL_TIMEOUT'])",
    )


def _default_port(backend: str) -> int | str:
    return {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}.get(backend, "?")


ENGINE_HOW = (
    "create_engine(url, pool_size=int(os.environ['DATABASE_POOL_SIZE']), max_overflow=0, "
    "pool_timeout=int(os.environ['DATABASE_POOL_TIMEOUT']), pool_pre_ping=True)"
)
DEFAULT_BIND_HOW = (
    "leave pool_size, max_overflow and pool_timeout out of SQLALCHEMY_ENGINE_OPTIONS and the server sizes it, "
    "or set them within the share"
)
BIND_HOW = "leave pool_size, max_overflow and pool_timeout out of its SQLALCHEMY_BINDS entry and the server sizes it"


def discover(app, settings: Settings) -> list[Pool]:
    """Every pool alive in this process once `app` is loaded: the
    Flask-SQLAlchemy extension's engines by their binds' names first."""
    found: list[Pool] = []
    seen: set[int] = set()
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.engine import Engine

        extension = getattr(app, "extensions", {}).get("sqlalchemy") if hasattr(app, "app_context") else None
        if extension is not None and hasattr(type(extension), "engines"):
            with app.app_context():
                engines = dict(extension.engines)
            for key, engine in engines.items():
                name = "Flask-SQLAlchemy's default engine" if key is None else f"Flask-SQLAlchemy's bind {key!r}"
                found.append(_sqlalchemy_pool(name, engine, settings, DEFAULT_BIND_HOW if key is None else BIND_HOW))
                seen.add(id(engine.pool))
        gc.collect()
        for engine in [o for o in gc.get_objects() if isinstance(o, Engine)]:
            if id(engine.pool) not in seen:
                found.append(_sqlalchemy_pool("SQLAlchemy engine", engine, settings, ENGINE_HOW))
                seen.add(id(engine.pool))
    if "psycopg_pool" in sys.modules:
        from psycopg_pool.base import BasePool

        for pool in [o for o in gc.get_objects() if isinstance(o, BasePool)]:
            found.append(_psycopg_pool(pool, settings))
    return found


# --- checking ----------------------------------------------------------------


def refusals(pools: list[Pool], settings: Settings) -> list[str]:
    """One line for each pool the budget cannot hold: over the worker's
    share, or waiting for a connection as long as the worker may live."""
    share = settings.database_pool_size
    lines = []
    for pool in pools:
        if not pool.counted:
            continue
        if pool.capacity > share:
            lines.append(
                f"{pool.describe()}: up to {pool.capacity} connections per worker, over its share of {share} "
                f"(DATABASE_POOL_SIZE, WORKER_CLASS={settings.worker_class}); {pool.how}"
            )
        elif pool.timeout is not None and pool.timeout >= settings.timeout:
            lines.append(
                f"{pool.describe()}: a request may wait {pool.timeout:g} s for a free connection, not below "
                f"GUNICORN_TIMEOUT={settings.timeout}, so gunicorn kills the worker first; {pool.how}"
            )
    return lines


def by_server(pools: list[Pool]) -> dict[str, list[Pool]]:
    """The counted pools, grouped by the database server they connect to."""
    grouped: dict[str, list[Pool]] = {}
    for pool in pools:
        if pool.counted:
            grouped.setdefault(pool.server, []).append(pool)
    return grouped


def ping(pool: Pool) -> bool:
    """One connection of its own, outside the pool (a busy pool is not a
    database that is down), a `SELECT 1`, closed."""
    connection = pool.connect()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0] == 1
    finally:
        connection.close()
