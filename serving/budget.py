"""The database connection budget, checked before anything changes:

    python -m serving.budget --replicas N

Every worker of every replica holds up to DATABASE_POOL_SIZE connections.
A start-first deploy (`make deploy`, Swarm's update_config) runs the old
replicas and the new side by side for a while, so the sum is doubled; the
database's other clients (migrations, psql, monitoring) keep
DATABASE_RESERVED_CONNECTIONS. That must fit in what the server allows to
ordinary users, read from the server itself: max_connections less
superuser_reserved_connections and reserved_connections (PostgreSQL 16+).
Over it, one line naming the variables and exit 2: `make up`, `make deploy`
and `make swarm-up` run this before they start anything, so the running
stack is untouched. The "too many clients" error it prevents otherwise
appears under load, in the middle of a deploy.

It reaches the database through the app's own engine, which the app hands
over in `app.extensions["database"]` (demo/db.py) of the WSGI entry point;
with no database configured there is nothing to check.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from serving.settings import SettingsError, current

#: A start-first deploy's overlap: the old replicas and the new, at once.
OVERLAP = 2

LIMITS = (
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int, "
    "coalesce(current_setting('reserved_connections', true), '0')::int"
)


@dataclass(frozen=True)
class Budget:
    replicas: int
    workers: int
    pool_size: int
    reserved: int
    max_connections: int
    superuser_reserved: int
    role_reserved: int

    @property
    def needed(self) -> int:
        return self.replicas * self.workers * self.pool_size * OVERLAP + self.reserved

    @property
    def allowed(self) -> int:
        return self.max_connections - self.superuser_reserved - self.role_reserved

    def fits(self) -> bool:
        return self.needed <= self.allowed

    def describe(self) -> str:
        return (
            f"APP_REPLICAS={self.replicas} x WEB_CONCURRENCY={self.workers} x DATABASE_POOL_SIZE={self.pool_size} "
            f"connections, doubled for a start-first deploy, plus DATABASE_RESERVED_CONNECTIONS={self.reserved}: "
            f"{self.needed}; the database allows {self.allowed} (max_connections {self.max_connections} "
            f"less {self.superuser_reserved} superuser-reserved and {self.role_reserved} reserved)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, required=True, help="app replicas (APP_REPLICAS)")
    args = parser.parse_args(argv)
    try:
        settings = current()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    # The app's entry point as it is, before the server's layers; its
    # engine has made no connection yet.
    from serving.wsgi import app

    engine = getattr(app, "extensions", {}).get("database")
    if engine is None:
        print("no database configured: no connection budget to check")
        return 0
    try:
        with engine.connect() as connection:
            limits = connection.exec_driver_sql(LIMITS).one()
    except Exception as exc:  # noqa: BLE001 - unreachable or refused: one line, and nothing starts
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"the database cannot be reached to check the connection budget: {cause}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    budget = Budget(
        replicas=args.replicas,
        workers=settings.workers,
        pool_size=settings.database_pool_size,
        reserved=settings.database_reserved_connections,
        max_connections=limits[0],
        superuser_reserved=limits[1],
        role_reserved=limits[2],
    )
    if not budget.fits():
        print(f"configuration error: the connection budget is over: {budget.describe()}", file=sys.stderr)
        return 2
    print(f"database connections: {budget.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
