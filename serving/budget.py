"""The database connection budget, checked before anything changes:

    python -m serving.budget --replicas N

Every worker of every replica holds up to its pools' connections (each pool
at most DATABASE_POOL_SIZE, the worker's share).
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

It counts the pools the app really opens (serving/pools.py: found once the
app is loaded, as a worker loads it, each already checked against the
worker's share), per database server, and reads the server's limits on a
connection of its own. With no pool found there is nothing to check.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from gunicorn.errors import AppImportError

from serving.pools import Pool, by_server
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
    #: Connections one worker's pools open at most, on this server.
    per_worker: int
    reserved: int
    max_connections: int
    superuser_reserved: int
    role_reserved: int
    #: Each pool's most, per worker: DATABASE_POOL_SIZE.
    share: int | None = None
    #: The pools, described (serving/pools.py's Pool.describe()).
    pools: tuple[str, ...] = ()
    #: Replicas running beside `replicas` during a deploy. None: as many
    #: again, a start-first deploy's (Compose, Swarm); a Deployment's
    #: maxSurge on Kubernetes (scripts/kubernetes-budget.py).
    surge: int | None = None

    @property
    def peak_replicas(self) -> int:
        return self.replicas * OVERLAP if self.surge is None else self.replicas + self.surge

    @property
    def needed(self) -> int:
        return self.peak_replicas * self.workers * self.per_worker + self.reserved

    @property
    def allowed(self) -> int:
        return self.max_connections - self.superuser_reserved - self.role_reserved

    def fits(self) -> bool:
        return self.needed <= self.allowed

    def describe(self) -> str:
        opened = "; ".join(
            ([f"DATABASE_POOL_SIZE={self.share} per pool"] if self.share is not None else []) + list(self.pools)
        )
        opened = f" ({opened})" if opened else ""
        return (
            f"APP_REPLICAS={self.replicas} x WEB_CONCURRENCY={self.workers} x {self.per_worker} connections per "
            f"worker{opened}, doubled for a start-first deploy, plus DATABASE_RESERVED_CONNECTIONS={self.reserved}: "
            f"{self.needed}; the database allows {self.allowed} (max_connections {self.max_connections} "
            f"less {self.superuser_reserved} superuser-reserved and {self.role_reserved} reserved)"
        )


def read_limits(pool: Pool) -> tuple[int, int, int]:
    connection = pool.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(LIMITS)
        return tuple(cursor.fetchone())
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, required=True, help="app replicas (APP_REPLICAS)")
    args = parser.parse_args(argv)
    try:
        settings = current()
        # The app loaded as a worker loads it, its pools found and checked;
        # none has made a connection yet.
        from serving.wsgi import database_pools
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except AppImportError as exc:  # serving/wsgi.py: one line saying why the app cannot be served
        print(exc, file=sys.stderr)
        return 2
    servers = by_server(database_pools)
    if not servers:
        print("no database pool in the app: no connection budget to check")
        return 0
    for server, members in servers.items():
        if members[0].backend != "postgresql":
            print(f"database connections on {server}: not checked, only PostgreSQL's limits are read")
            continue
        try:
            limits = read_limits(members[0])
        except Exception as exc:  # noqa: BLE001 - unreachable or refused: one line, and nothing starts
            cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"the database cannot be reached to check the connection budget: {cause}", file=sys.stderr)
            return 2
        budget = Budget(
            replicas=args.replicas,
            workers=settings.workers,
            per_worker=sum(pool.capacity for pool in members),
            reserved=settings.database_reserved_connections,
            max_connections=limits[0],
            superuser_reserved=limits[1],
            role_reserved=limits[2],
            share=settings.database_pool_size,
            pools=tuple(pool.describe() for pool in members),
        )
        if not budget.fits():
            print(f"configuration error: the connection budget is over: {budget.describe()}", file=sys.stderr)
            return 2
        print(f"database connections: {budget.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
