"""serving/migrate.py with an app that migrates with Alembic alone (no
Flask-Migrate): its alembic.ini found beside it, or named by ALEMBIC_CONFIG;
each pending revision applied, and a failing one named in one line. On
SQLite, in a subprocess, as `make up` runs it. Flask-Migrate's path, against
PostgreSQL: tests/integration/test_fork.py."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ENV_PY = """
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = '''
"""{doc}"""
from alembic import op

revision = {revision!r}
down_revision = {down!r}


def upgrade():
    op.execute({statement!r})
'''


def alembic_project(root: Path, statements: list[str], ini_name: str = "alembic.ini") -> Path:
    """An app package, and its Alembic migrations on a SQLite file beside it."""
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("from flask import Flask\n\napp = Flask(__name__)\n")
    migrations = root / "migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(ENV_PY)
    down = None
    for number, statement in enumerate(statements, 1):
        revision = f"000{number}"
        text = REVISION.format(doc=f"step {number}", revision=revision, down=down, statement=statement)
        (migrations / "versions" / f"{revision}_step.py").write_text(textwrap.dedent(text))
        down = revision
    ini = root / ini_name
    ini.write_text(f"[alembic]\nscript_location = {migrations}\nsqlalchemy.url = sqlite:///{root / 'shop.db'}\n")
    return ini


def migrate(helpers, env_factory, root: Path, **env: str):
    environment = env_factory(PYTHONPATH=f"{root}:{helpers.repo_root}", APP_MODULE="shop:app", **env)
    code = f"import os; os.chdir({str(root)!r}); import runpy; runpy.run_module('serving.migrate', run_name='__main__')"
    return helpers.run_python(["-c", code], environment, timeout=60)


def tables(root: Path) -> set[str]:
    with sqlite3.connect(root / "shop.db") as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_alembic_ini_beside_the_app_is_found_and_every_revision_applied_once(helpers, env_factory, tmp_path):
    alembic_project(tmp_path, ["CREATE TABLE orders (id INTEGER)", "CREATE TABLE lines (id INTEGER)"])
    first = migrate(helpers, env_factory, tmp_path)
    assert first.returncode == 0, first.stderr
    assert {"orders", "lines", "alembic_version"} <= tables(tmp_path)
    again = migrate(helpers, env_factory, tmp_path)  # nothing pending: nothing run twice
    assert again.returncode == 0, again.stderr


def test_alembic_config_names_it_and_a_failing_revision_is_named_in_one_line(helpers, env_factory, tmp_path):
    ini = alembic_project(tmp_path, ["CREATE TABLE orders (id INTEGER)", "ALTER TABLE nowhere ADD x INTEGER"], "db.ini")
    assert migrate(helpers, env_factory, tmp_path).stdout.startswith("the app has no `flask db upgrade`")
    result = migrate(helpers, env_factory, tmp_path, ALEMBIC_CONFIG=str(ini))
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("migration failed")]
    assert line.startswith("migration failed: revision 0001 -> 0002, step 2: OperationalError:"), result.stderr
    assert "orders" in tables(tmp_path)  # the revision before it stays applied
