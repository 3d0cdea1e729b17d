"""serving/pools.py without a database server: the pools the server sizes
through Flask-SQLAlchemy's config, the ones it finds (Flask-SQLAlchemy's
engines and binds, a plain engine, psycopg_pool), the one line that refuses
a pool over its share, readiness and the 503s on the app's own engines. The
same against PostgreSQL, with the app a team already has:
tests/integration/test_fork.py."""

from __future__ import annotations

import textwrap
import time

import pytest
from flask import Flask
from werkzeug.test import Client

from harness.stack import REPO
from serving import pools
from serving.app import answer_errors_in_json
from serving.middleware import wrap
from serving.settings import load

pytestmark = pytest.mark.unit

#: Never reached: the pools are sized and found without a connection.
URL = "postgresql+psycopg://app@127.0.0.1:1/app"


@pytest.fixture
def sized(monkeypatch):
    """install_sizing(settings) for this test alone: Flask's class
    attributes it sets are put back after."""
    monkeypatch.setattr(Flask, "config_class", Flask.config_class)
    monkeypatch.setattr(Flask, "default_config", Flask.default_config)

    def install(**env: str):
        settings = load(env, cpus=2)
        pools.install_sizing(settings)
        return settings

    return install


def flask_sqlalchemy_app(**config) -> tuple[Flask, object]:
    from flask_sqlalchemy import SQLAlchemy

    db = SQLAlchemy()
    app = Flask(__name__)
    app.config.from_mapping({"SQLALCHEMY_DATABASE_URI": URL, **config})
    db.init_app(app)
    return app, db


def found(app, settings) -> dict[str, pools.Pool]:
    return {pool.name: pool for pool in pools.discover(app, settings)}


@pytest.mark.parametrize(
    ("env", "share"),
    [({}, 1), ({"WORKER_CLASS": "gthread", "GUNICORN_THREADS": "6"}, 6), ({"WORKER_CLASS": "gevent"}, 10)],
)
def test_flask_sqlalchemy_is_sized_from_the_worker_class_through_its_own_config(sized, env, share):
    settings = sized(**env, DATABASE_POOL_TIMEOUT="4")
    app, db = flask_sqlalchemy_app()
    with app.app_context():
        pool = db.engine.pool
    assert (pool.size(), pool._max_overflow, pool.timeout(), pool._pre_ping) == (share, 0, 4, True)
    (engine,) = found(app, settings).values()
    assert engine.name == "Flask-SQLAlchemy's default engine" and engine.capacity == share
    assert pools.refusals([engine], settings) == []


def test_the_apps_own_engine_options_are_kept_and_the_pool_still_sized(sized):
    settings = sized()
    app, db = flask_sqlalchemy_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_recycle": 280, "pool_pre_ping": False})
    with app.app_context():
        pool = db.engine.pool
    assert (pool._recycle, pool._pre_ping, pool.size(), pool._max_overflow) == (280, False, 1, 0)
    assert pools.refusals(list(found(app, settings).values()), settings) == []


def test_flask_sqlalchemys_own_defaults_are_what_the_server_replaces(monkeypatch):
    # Unsized, as the notes app was: a QueuePool of 5 with 10 overflow and a
    # 30 s wait, gunicorn's worker timeout; refused under every class.
    from flask.config import Config
    from werkzeug.datastructures import ImmutableDict

    monkeypatch.setattr(Flask, "config_class", Config)  # as Flask ships, whatever a test loaded before
    defaults = {k: v for k, v in Flask.default_config.items() if k != pools.FLASK_SQLALCHEMY_OPTIONS}
    monkeypatch.setattr(Flask, "default_config", ImmutableDict(defaults))
    settings = load({}, cpus=2)
    app, _ = flask_sqlalchemy_app()
    (engine,) = found(app, settings).values()
    assert (engine.capacity, engine.timeout) == (15, 30)
    (line,) = pools.refusals([engine], settings)
    assert line.startswith("Flask-SQLAlchemy's default engine (postgresql+psycopg://app@127.0.0.1:1/app): ")
    assert "pool_size 5 + max_overflow 10" in line and "up to 15 connections per worker" in line
    assert "over its share of 1 (DATABASE_POOL_SIZE, WORKER_CLASS=sync)" in line


def test_a_pool_the_app_sizes_over_its_share_is_refused_naming_it(sized):
    settings = sized(WORKER_CLASS="gthread")
    app, _ = flask_sqlalchemy_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 8})
    (line,) = pools.refusals(list(found(app, settings).values()), settings)
    assert "pool_size 8 + max_overflow 0" in line and "over its share of 4" in line
    assert "SQLALCHEMY_ENGINE_OPTIONS" in line


def test_a_pool_timeout_as_long_as_the_workers_is_refused(sized):
    settings = sized(GUNICORN_TIMEOUT="10")
    app, _ = flask_sqlalchemy_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_timeout": 10})
    (line,) = pools.refusals(list(found(app, settings).values()), settings)
    assert "may wait 10 s for a free connection, not below GUNICORN_TIMEOUT=10" in line


def test_binds_are_sized_and_a_bind_over_its_share_is_named(sized):
    settings = sized(WORKER_CLASS="gevent", DATABASE_POOL_SIZE="3")
    app, db = flask_sqlalchemy_app(
        SQLALCHEMY_BINDS={"audit": URL.replace("/app", "/audit"), "reports": {"url": URL, "pool_size": 12}}
    )
    engines = found(app, settings)
    assert set(engines) == {
        "Flask-SQLAlchemy's default engine",
        "Flask-SQLAlchemy's bind 'audit'",
        "Flask-SQLAlchemy's bind 'reports'",
    }
    assert engines["Flask-SQLAlchemy's bind 'audit'"].capacity == 3
    (line,) = pools.refusals(list(engines.values()), settings)
    assert line.startswith("Flask-SQLAlchemy's bind 'reports'") and "pool_size 12 + max_overflow 0" in line
    # All three on one server: the budget counts them together.
    assert [len(members) for members in pools.by_server(list(engines.values())).values()] == [3]


def test_a_plain_engine_is_found_and_sized_from_the_environment_or_refused(monkeypatch):
    from sqlalchemy import create_engine

    settings = load({"WORKER_CLASS": "gthread"}, cpus=2)
    app = Flask(__name__)
    app.extensions["mine"] = create_engine(URL)  # SQLAlchemy's defaults: 5 + 10
    (engine,) = found(app, settings).values()
    (line,) = pools.refusals([engine], settings)
    assert (
        line.startswith("SQLAlchemy engine (postgresql+psycopg://app@127.0.0.1:1/app)") and "DATABASE_POOL_SIZE" in line
    )
    del engine  # its pool's connect() keeps the old engine alive otherwise
    app.extensions["mine"] = create_engine(URL, pool_size=settings.database_pool_size, max_overflow=0, pool_timeout=5)
    (engine,) = found(app, settings).values()
    assert engine.capacity == 4 and pools.refusals([engine], settings) == []


def test_a_nullpool_opens_what_a_worker_runs_at_once(monkeypatch):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    app = Flask(__name__)
    app.extensions["mine"] = create_engine(URL, poolclass=NullPool)
    assert pools.refusals(list(found(app, load({}, cpus=2)).values()), load({}, cpus=2)) == []
    gevent = load({"WORKER_CLASS": "gevent"}, cpus=2)
    (line,) = pools.refusals(list(found(app, gevent).values()), gevent)
    assert "up to 1000 connections per worker, over its share of 10" in line


def test_a_psycopg_pool_is_found_and_checked():
    from psycopg_pool import ConnectionPool

    settings = load({"WORKER_CLASS": "gthread"}, cpus=2)
    app = Flask(__name__)
    app.extensions["pool"] = ConnectionPool("host=db.example port=5433 dbname=app user=app", max_size=20, open=False)
    (pool,) = found(app, settings).values()
    assert (pool.server, pool.capacity) == ("db.example:5433", 20)
    (line,) = pools.refusals([pool], settings)
    assert "max_size 20" in line and "over its share of 4" in line
    del pool
    app.extensions["pool"] = ConnectionPool("host=db.example dbname=app", max_size=4, timeout=5, open=False)
    assert pools.refusals(list(found(app, settings).values()), settings) == []


def test_a_file_database_is_not_counted(tmp_path):
    from sqlalchemy import create_engine

    app = Flask(__name__)
    app.extensions["mine"] = create_engine(f"sqlite:///{tmp_path}/notes.db")
    (engine,) = found(app, load({}, cpus=2)).values()
    assert not engine.counted and pools.by_server([engine]) == {}


# --- served: readiness and the 503s, on the app's own engine -----------------------


def served(app, databases) -> Client:
    answer_errors_in_json(app)
    return Client(wrap(app, load({"METRICS_PORT": "0"}, cpus=1), databases=databases))


def test_readiness_pings_the_apps_database_on_a_connection_of_its_own(sized):
    settings = sized()
    app, db = flask_sqlalchemy_app()
    client = served(app, pools.discover(app, settings))
    started = time.monotonic()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["failed"] == ["database"]
    assert time.monotonic() - started < pools.PING_TIMEOUT + 1
    assert client.get("/healthz").status_code == 200  # an outage never restarts the app
    with app.app_context():
        assert db.engine.pool.checkedout() == 0  # the pool was not used


def test_an_unreachable_database_is_a_json_503_with_retry_after_not_the_apps_page(sized):
    from sqlalchemy import text

    settings = sized()
    app, db = flask_sqlalchemy_app()

    @app.errorhandler(500)
    def own_page(exc):
        return "<h1>Our own error page</h1>", 500

    @app.get("/notes")
    def notes():
        return str(db.session.execute(text("SELECT 1")).scalar())

    @app.get("/bug")
    def bug():
        from sqlalchemy.exc import ProgrammingError

        raise ProgrammingError("SELECT nope", {}, Exception("column nope does not exist"))

    client = served(app, pools.discover(app, settings))
    response = client.get("/notes", headers={"X-Request-ID": "pools-unreachable-1"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["message"] == "the database cannot be reached; try again"
    assert response.get_json()["error"]["request_id"] == "pools-unreachable-1"
    # A bug in the app's SQL is its own 500 page, not an outage.
    page = client.get("/bug")
    assert page.status_code == 500 and page.text == "<h1>Our own error page</h1>"


def test_a_busy_pool_is_a_json_503_after_its_timeout(sized, tmp_path):
    from sqlalchemy import text

    settings = sized(DATABASE_POOL_TIMEOUT="1")
    app, db = flask_sqlalchemy_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/notes.db")

    @app.get("/two")
    def two_connections():
        with db.engine.connect() as first, db.engine.connect() as second:  # a pool of 1: waits 1 s
            return str(first.execute(text("SELECT 1")).scalar() + second.execute(text("SELECT 1")).scalar())

    client = served(app, pools.discover(app, settings))
    started = time.monotonic()
    response = client.get("/two")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "busy" in response.get_json()["error"]["message"]
    assert 0.9 < time.monotonic() - started < 3


def test_the_apps_own_handler_for_its_database_errors_is_kept(sized):
    from sqlalchemy.exc import SQLAlchemyError

    settings = sized()
    app, db = flask_sqlalchemy_app()

    @app.errorhandler(SQLAlchemyError)
    def own(exc):
        return {"mine": True}, 500

    @app.get("/notes")
    def notes():
        from sqlalchemy import text

        return str(db.session.execute(text("SELECT 1")).scalar())

    response = served(app, pools.discover(app, settings)).get("/notes")
    assert response.status_code == 500 and response.get_json() == {"mine": True}


def test_a_pool_over_its_share_stops_the_check_with_one_line(helpers, env_factory, tmp_path):
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            from flask import Flask
            from flask_sqlalchemy import SQLAlchemy

            db = SQLAlchemy()

            def create_app():
                app = Flask(__name__)
                app.config["SQLALCHEMY_DATABASE_URI"] = {URL!r}
                app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {{"pool_size": 20, "max_overflow": 5}}
                db.init_app(app)
                return app
            """
        )
    )
    environment = env_factory(PYTHONPATH=f"{tmp_path}:{helpers.repo_root}", APP_MODULE="shop:create_app()")
    code = (
        f"import os; os.chdir({str(tmp_path)!r}); import runpy; runpy.run_module('serving.check', run_name='__main__')"
    )
    result = helpers.run_python(["-c", code], environment)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: Flask-SQLAlchemy's default engine")
    assert "pool_size 20 + max_overflow 5" in line and "over its share of 1" in line


def test_the_refusal_docs_database_md_shows_is_the_one_printed(sized):
    settings = sized()
    app, _ = flask_sqlalchemy_app(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg://app@db:5432/app",
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 5, "max_overflow": 10},
    )
    (line,) = pools.refusals(list(found(app, settings).values()), settings)
    docs = (REPO / "docs" / "database.md").read_text()
    assert f"    configuration error: {line}\n" in docs


@pytest.mark.parametrize("options", [{"pool_size": 0}, {"max_overflow": -1}])
def test_a_pool_without_a_limit_opens_what_a_worker_runs_at_once(options):
    from sqlalchemy import create_engine

    app = Flask(__name__)
    app.extensions["mine"] = create_engine(URL, **options)  # SQLAlchemy's "no limit"
    gevent = load({"WORKER_CLASS": "gevent"}, cpus=2)
    (line,) = pools.refusals(list(found(app, gevent).values()), gevent)
    assert "up to 1000 connections per worker, over its share of 10" in line
