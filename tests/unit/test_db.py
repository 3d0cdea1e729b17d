"""demo/db.py without a server: the engine each worker makes, its pool as the
server sized it, the URL with the password from its file, the demonstration
endpoints only with a database. The database itself: tests/integration/test_database.py."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from demo import db
from demo.factory import create_app
from serving import pools, settings
from serving.app import answer_errors_in_json
from serving.middleware import wrap

pytestmark = pytest.mark.unit

URL = "postgresql+psycopg://app@db.invalid:5432/app"


@pytest.fixture
def database_app(app, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DATABASE_POOL_SIZE", "7")
    monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "2")
    return create_app()


def test_no_database_means_no_engine_and_no_database_endpoints(app):
    assert db.EXTENSION not in app.extensions
    assert not any(rule.rule.startswith("/db/") for rule in app.url_map.iter_rules())


def test_the_engine_has_the_servers_pool_and_never_overflows(database_app):
    engine = database_app.extensions[db.EXTENSION]
    assert engine.pool.size() == 7
    assert engine.pool.timeout() == 2
    assert engine.pool._max_overflow == 0  # QueuePool keeps it only there
    # No password in the URL: libpq reads it from the file the server writes (serving/app.py).
    assert engine.url.password is None and engine.url.host == "db.invalid"
    rules = {rule.rule for rule in database_app.url_map.iter_rules()}
    assert {"/db/sleep", "/db/items", "/db/items/<int:item_id>"} <= rules


def test_the_server_finds_the_demos_one_engine_and_no_other(database_app):
    server = settings.load({"DATABASE_POOL_SIZE": "7"}, cpus=1)
    (pool,) = pools.discover(database_app, server)
    assert (pool.name, pool.capacity, pool.server) == ("SQLAlchemy engine", 7, "db.invalid:5432")
    assert pools.refusals([pool], server) == []


def test_a_database_that_cannot_be_reached_is_a_json_503_with_retry_after(database_app):
    # db.invalid never resolves: the connection fails at once.
    answer_errors_in_json(database_app)
    served = Client(
        wrap(database_app, settings.load({}, cpus=1), databases=pools.discover(database_app, settings.load({}, cpus=1)))
    )
    response = served.get("/db/sleep?ms=0")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["status"] == 503
    ready = served.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["failed"] == ["database"]
    assert served.get("/healthz").status_code == 200


def test_the_pool_size_is_the_servers_or_one():
    assert db.pool_size({}) == 1
    assert db.pool_size({"DATABASE_POOL_SIZE": "4"}) == 4
