"""The database's connection budget and the pool per worker (serving/budget.py,
serving/settings.py): the arithmetic, and the figures docs/database.md states."""

from __future__ import annotations

import pytest

from harness.stack import REPO
from serving.budget import OVERLAP, Budget
from serving.settings import GEVENT_DATABASE_POOL, load

pytestmark = pytest.mark.unit

#: PostgreSQL's defaults: max_connections 100, 3 for superusers, none reserved.
POSTGRES_DEFAULTS = {"max_connections": 100, "superuser_reserved": 3, "role_reserved": 0}


@pytest.mark.parametrize(
    ("worker_class", "threads", "pool"),
    [("sync", None, 1), ("gthread", None, 4), ("gthread", "16", 16), ("gevent", None, GEVENT_DATABASE_POOL)],
)
def test_the_pool_per_worker_follows_the_worker_class(worker_class, threads, pool):
    env = {"WORKER_CLASS": worker_class, **({"GUNICORN_THREADS": threads} if threads else {})}
    settings = load(env, cpus=2)
    assert settings.database_pool_size == pool
    assert settings.database_connections == settings.workers * pool
    assert load({**env, "DATABASE_POOL_SIZE": "3"}, cpus=2).database_pool_size == 3


def budget(replicas: int, worker_class: str, **limits: int) -> Budget:
    settings = load({"WORKER_CLASS": worker_class}, cpus=2)
    return Budget(
        replicas=replicas,
        workers=settings.workers,
        per_worker=settings.database_pool_size,
        reserved=settings.database_reserved_connections,
        share=settings.database_pool_size,
        **{**POSTGRES_DEFAULTS, **limits},
    )


def test_the_budget_is_replicas_workers_pool_doubled_plus_the_reserve():
    b = budget(2, "gthread")
    assert OVERLAP == 2
    assert (b.workers, b.per_worker, b.reserved) == (5, 4, 5)
    assert b.needed == 2 * 5 * 4 * 2 + 5
    assert b.allowed == 100 - 3 - 0
    assert b.allowed == budget(2, "gthread", role_reserved=0).allowed


@pytest.mark.parametrize(
    ("replicas", "worker_class", "needed", "fits"),
    [
        # docs/database.md's figures, on PostgreSQL's defaults (97 allowed).
        (2, "sync", 25, True),
        (2, "gthread", 85, True),
        (10, "gthread", 405, False),
        (2, "gevent", 205, False),
    ],
)
def test_the_figures_the_docs_state(replicas, worker_class, needed, fits):
    b = budget(replicas, worker_class)
    assert (b.needed, b.fits()) == (needed, fits)
    docs = (REPO / "docs" / "database.md").read_text()
    assert "20 + 5" in docs and "80 + 5" in docs and "10 replicas of it do not" in docs and "200 + 5" in docs


@pytest.mark.parametrize("change", [{"WEB_CONCURRENCY": "2"}, {"DATABASE_POOL_SIZE": "4"}])
def test_either_fix_the_docs_give_for_gevent_fits(change):
    settings = load({"WORKER_CLASS": "gevent", **change}, cpus=2)
    b = Budget(
        replicas=2,
        workers=settings.workers,
        per_worker=settings.database_pool_size,
        reserved=settings.database_reserved_connections,
        **POSTGRES_DEFAULTS,
    )
    assert (b.needed, b.fits()) == (85, True)


def test_reserved_connections_lower_what_is_allowed():
    assert budget(2, "gthread", role_reserved=10).fits() is True
    assert budget(2, "gthread", role_reserved=20).fits() is False


def test_the_refusal_names_every_variable():
    line = budget(10, "gthread").describe()
    for name in ("APP_REPLICAS=10", "WEB_CONCURRENCY=5", "DATABASE_POOL_SIZE=4", "DATABASE_RESERVED_CONNECTIONS=5"):
        assert name in line
    assert "405" in line and "97" in line
