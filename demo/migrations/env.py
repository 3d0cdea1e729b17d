"""Alembic's environment: the app's own database URL and metadata
(demo/config.py, demo/db.py), one transaction per migration, so that a
failing one leaves the schema at the revision before it. Run by
`flask db upgrade` (demo/migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from demo import config, db

values = config.from_environ()
url = db.database_url(values)
if url is None:
    raise SystemExit("no database configured (DATABASE_URL, or COMPOSE_PROFILES=db): nothing to migrate")

# The connect timeout is libpq's PGCONNECT_TIMEOUT, which the server sets.
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=db.Base.metadata,
        transaction_per_migration=True,
        on_version_apply=context.config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
