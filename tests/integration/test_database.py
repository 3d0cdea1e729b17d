"""The stack with its database (COMPOSE_PROFILES=db, docs/database.md), against
a real PostgreSQL: the connection budget stops a start that would overflow
the server, the database going away costs only the database's endpoints,
data survives, migrations run inside the deploy, and the database container
is hardened and published nowhere. What the pools run at once:
test_database_degree.py."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from harness.load import Load
from harness.stack import REPO, Stack, app_build_context
from tests.outage import refusing

pytestmark = pytest.mark.integration

#: Two workers each, one replica (test_database_degree.py fires its design figures at once).
WORKERS = 2


def database_stack(name: str, **env: str) -> Stack:
    return Stack(name, COMPOSE_PROFILES="db", APP_REPLICAS="1", WEB_CONCURRENCY=str(WORKERS), **env)


def migrate(stack: Stack) -> subprocess.CompletedProcess:
    return stack.compose("run", "--rm", "--no-deps", "-T", "app", "python3", "-m", "serving.migrate", timeout=180)


# --- the default stack with its database -----------------------------------------


@pytest.fixture(scope="module")
def db_stack(built_images):
    stack = database_stack("db")
    try:
        stack.up()
        assert migrate(stack).returncode == 0
        yield stack
    finally:
        stack.down()


def test_rows_are_written_and_read_through_the_orm(db_stack):
    created = db_stack.request("POST", "/db/items", json={"name": "first row"})
    assert created.status_code == 201, created.text
    item = created.json()
    assert db_stack.get(f"/db/items/{item['id']}").json() == item
    assert db_stack.get("/db/items/999999999").status_code == 404


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 101}, {"name": 7}, ["name"]])
def test_a_bad_row_is_a_json_400_naming_the_parameter(db_stack, body):
    response = db_stack.request("POST", "/db/items", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["parameter"] == "name"


def test_readiness_names_the_database_and_liveness_ignores_it(db_stack):
    ready = db_stack.get("/readyz").json()
    assert ready == {"status": "ready", "checks": ["database"]}
    # Liveness checks nothing of the database: with it unreachable, see
    # test_the_database_going_away_costs_only_its_endpoints_and_the_app_recovers.
    live = db_stack.get("/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


def test_the_database_going_away_costs_only_its_endpoints_and_the_app_recovers(db_stack):
    db = db_stack.container("db")
    assert db_stack.get("/db/sleep?ms=0").status_code == 200  # a pooled connection, open
    refusing(db.id, True)
    try:
        started = time.monotonic()
        down = db_stack.get("/db/sleep?ms=0")
        took = time.monotonic() - started
        assert down.status_code == 503 and down.json()["error"]["status"] == 503, down.text
        assert down.headers["Retry-After"] == "1"
        assert took < 3, f"{took:.1f} s: longer than the connect timeout (3 s)"
        assert db_stack.get("/readyz").status_code == 503
        assert db_stack.get("/healthz").status_code == 200
        assert db_stack.get("/").status_code == 200
    finally:
        refusing(db.id, False)
    deadline = time.monotonic() + 60
    while db_stack.get("/db/sleep?ms=0").status_code != 200:
        assert time.monotonic() < deadline, "the app did not recover without a restart"
        time.sleep(1)
    assert db_stack.get("/readyz").status_code == 200


def test_the_database_is_hardened_and_published_nowhere(db_stack):
    db = db_stack.container("db")
    config = db.config
    host = db.host_config
    assert config.user == "999:999"
    assert host.readonly_rootfs is True
    assert host.cap_drop == ["ALL"]
    assert "no-new-privileges:true" in host.security_opt
    assert host.memory > 0 and host.pids_limit > 0
    assert not any(db.network_settings.ports.values()), db.network_settings.ports
    assert db.state.health.status == "healthy"
    processes = db_stack.processes("db")
    assert processes and all(p["uid"] in ("999", "postgres") for p in processes), processes


def test_the_connection_budget_stops_make_up_with_one_line_and_the_stack_keeps_serving(db_stack):
    before = sorted(c.id for c in db_stack.containers("app"))
    over = {"APP_REPLICAS": "16", "WORKER_CLASS": "gthread", "GUNICORN_THREADS": "8"}
    result = subprocess.run(
        ["make", "up"],
        cwd=REPO,
        env={**os.environ, **db_stack.cli_environment(), **over},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "the connection budget is over: APP_REPLICAS=16 x WEB_CONCURRENCY=2 x 8 connections per worker" in lines[0]
    # The pool the demo really opens, as the server found it.
    assert "DATABASE_POOL_SIZE=8 per pool; SQLAlchemy engine (postgresql+psycopg://app@db:5432/app)" in lines[0]
    assert "pool_size 8 + max_overflow 0, pool_timeout 5 s" in lines[0]
    assert "max_connections 100" in lines[0]
    assert sorted(c.id for c in db_stack.containers("app")) == before
    assert db_stack.get("/db/sleep?ms=0").status_code == 200


# --- migrations and the deploy, under load -----------------------------------------

#: The steady load of the operations tests (tests/integration/test_operations.py):
#: 16 clients, each request waiting 20 ms, under the per-client limit.
LOAD_PATH = "/work/io?ms=20"

MIGRATION = '''"""Add a note to items (an expand step: nullable, the old code never reads it).

Revision ID: 0002_note
Revises: 0001_items
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_note"
down_revision = "0001_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("note", sa.String(100), nullable=True))


def downgrade() -> None:
    op.drop_column("items", "note")
'''

FAILING = '''"""A migration that fails half-way.

Revision ID: 0003_broken
Revises: 0002_note
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_broken"
down_revision = "0002_note"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("temporary", sa.Integer, nullable=True))
    op.execute("SELECT no_such_function()")


def downgrade() -> None:
    pass
'''


@pytest.fixture(scope="module")
def db_ops(built_images, tmp_path_factory):
    context = tmp_path_factory.mktemp("db-ops")
    overlay = app_build_context(context, "flask-concurrency-test/db-ops-app")
    stack = Stack("db-ops", overlays=(overlay,), COMPOSE_PROFILES="db", APP_REPLICAS="2")
    stack.docker.compose.build(services=["app"], quiet=True)
    stack.context = context
    try:
        stack.up()
        assert migrate(stack).returncode == 0
        yield stack
    finally:
        stack.down()


def make(stack: Stack, target: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        env={**os.environ, **stack.cli_environment(), "COMPOSE_PROFILES": "db", "APP_REPLICAS": "2", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result.output = result.stdout + result.stderr
    return result


def revision(stack: Stack) -> str:
    out = stack.compose(
        "exec", "-T", "db", "psql", "-U", "app", "-d", "app", "-Atc", "SELECT version_num FROM alembic_version"
    )
    return out.stdout.strip()


@pytest.mark.operations
def test_deploys_with_a_migration_and_with_a_failing_one_fail_no_request(db_ops):
    versions = db_ops.context / "demo" / "migrations" / "versions"
    row = db_ops.request("POST", "/db/items", json={"name": "kept across deploys"}).json()
    (versions / "0002_note.py").write_text(MIGRATION)
    load = Load(db_ops.url + LOAD_PATH)
    try:
        deployed = make(db_ops, "deploy")
    finally:
        result = load.stop()
    assert deployed.returncode == 0, deployed.output[-3000:]
    assert "applied 0002_note" in deployed.output
    assert result.failed == 0, result.summary()
    assert revision(db_ops) == "0002_note"

    before = sorted(c.id for c in db_ops.containers("app"))
    (versions / "0003_broken.py").write_text(FAILING)
    load = Load(db_ops.url + LOAD_PATH)
    try:
        refused = make(db_ops, "deploy")
    finally:
        result = load.stop()
        (versions / "0003_broken.py").unlink()
    assert refused.returncode != 0
    failed = [line for line in refused.output.splitlines() if line.startswith("migration failed")]
    assert len(failed) == 1 and "revision 0003_broken" in failed[0], refused.output[-3000:]
    assert "deploy refused" in refused.output
    assert result.failed == 0, result.summary()
    assert sorted(c.id for c in db_ops.containers("app")) == before
    assert revision(db_ops) == "0002_note", "the failed migration was not rolled back"
    # The row written before both deploys is still there.
    assert db_ops.get(f"/db/items/{row['id']}").json() == row


@pytest.mark.operations
def test_the_database_restarted_under_load_fails_nothing_but_its_own_endpoints(db_ops):
    load = Load(db_ops.url + LOAD_PATH)
    statuses = []
    try:
        restarted = db_ops.compose("restart", "db", timeout=120)
        assert restarted.returncode == 0, restarted.stderr
        deadline = time.monotonic() + 60
        while True:
            statuses.append(db_ops.get("/db/sleep?ms=0").status_code)
            if statuses[-1] == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        result = load.stop()
    assert result.failed == 0, result.summary()
    assert statuses[-1] == 200, statuses
    assert set(statuses) <= {200, 503}, statuses


def test_data_survives_make_down_and_make_up(db_ops):
    row = db_ops.request("POST", "/db/items", json={"name": "survives"}).json()
    down = make(db_ops, "down")
    assert down.returncode == 0, down.output
    up = make(db_ops, "up")
    assert up.returncode == 0, up.output[-3000:]
    db_ops.wait_serving()
    assert db_ops.get(f"/db/items/{row['id']}").json() == row
    assert "database_connections_per_replica" in up.output
