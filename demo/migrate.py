"""Apply the pending migrations: `flask db upgrade` (the command the server
migrates with, serving/migrate.py), or `python -m demo.migrate`.

`make up` and `make deploy` run it once, in a one-off container of the new
image, before any replica of it starts: not per replica, not per worker.
Each migration runs in its own transaction, so a failing one leaves the
database at the revision before it; the command then exits 1 with one line
naming the failed revision, and the deploy stops with the old replicas
serving. Without a database configured it does nothing.

A schema change under a rolling deploy is made in two deploys: expand (add,
never remove or rename, what the old code still reads), then contract once
no old replica is left (docs/database.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from demo import config, db

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    alembic = Config()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    return alembic


def main() -> int:
    try:
        values = config.from_environ()
    except config.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    url = db.database_url(values)
    if url is None:
        print("no database configured: nothing to migrate")
        return 0
    try:
        engine = create_engine(url)  # libpq's PGCONNECT_TIMEOUT bounds the connect (the server sets it)
        with engine.connect() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - unreachable: one line, as any failure here
        print(f"migration failed: the database cannot be reached: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    alembic = alembic_config()
    applied: list[str] = []
    alembic.attributes["on_version_apply"] = lambda *, step, **_: applied.append(step.up_revision_id)
    script = ScriptDirectory.from_config(alembic)
    try:
        command.upgrade(alembic, "head")
    except Exception as exc:  # noqa: BLE001 - any failure is one line naming the revision
        failed = _next_revision(script, applied[-1] if applied else before)
        name = f"{failed.revision} ({failed.doc})" if failed else "?"
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"migration failed: revision {name}: {type(exc).__name__}: {cause}", file=sys.stderr)
        return 1
    print(f"database at revision {script.get_current_head()}" + (f" (applied {', '.join(applied)})" if applied else ""))
    return 0


def _next_revision(script: ScriptDirectory, after: str | None):
    """The revision that comes after `after` on the way to head (the one
    that failed), when the history is a line."""
    for revision in script.walk_revisions():
        if revision.down_revision == after or (after is None and revision.down_revision is None):
            return revision
    return None


#: `flask db upgrade`, as Flask-Migrate names it.
cli = click.Group("db", help="The demo's database migrations.")


@cli.command("upgrade")
def upgrade() -> None:
    """Apply the pending migrations."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
