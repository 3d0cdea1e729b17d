"""The gevent worker's database gate (serving/gevent_worker.py), its logic
alone: a fake clock, fake servers and pools, timers recorded instead of run.
What it buys, a burst at the design degree, is measured by bench/burst.py
(tests/bench/test_burst.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.pool import NullPool, Pool, QueuePool

from serving.gevent_worker import BalancedGeventWorker, DatabaseGate, RequestSlotPool, capacity

pytestmark = pytest.mark.unit

DEFER = 0.05


class FakePool:
    """What the gate reads of a QueuePool."""

    def __init__(self, size: int, max_overflow: int = 0, checkedout: int = 0) -> None:
        self._size, self._max_overflow, self.out = size, max_overflow, checkedout

    def size(self) -> int:
        return self._size

    def checkedout(self) -> int:
        return self.out


class FakeServer:
    def __init__(self, pending: bool = True) -> None:
        self.started, self.accepting, self.has_pending = True, True, pending

    def stop_accepting(self) -> None:
        self.accepting = False

    def start_accepting(self) -> None:
        self.accepting = True


class Gate(DatabaseGate):
    """The gate with its timers recorded and the socket's state faked."""

    def __init__(self, defer: float | None = DEFER, fresh: int = 0) -> None:
        self.now, self.fresh_count, self.timers = 100.0, fresh, []
        super().__init__(defer, fresh=lambda: self.fresh_count, clock=lambda: self.now)

    def later(self, seconds, function, *args) -> None:
        self.timers.append((self.now + seconds, function, args))

    def fire_timers(self) -> None:
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, function, args in due:
            function(*args)

    def pending(self, server) -> bool:
        assert server.started, "read the socket of a closed server"
        return server.has_pending


def saturated_gate(**kwargs) -> tuple[Gate, FakePool]:
    gate = Gate(**kwargs)
    pool = FakePool(5, checkedout=5)
    gate.pools.add(pool)
    return gate, pool


def test_a_worker_with_a_free_connection_accepts():
    gate, pool = saturated_gate()
    pool.out = 4
    server = FakeServer()
    assert gate.admits(server) and server.accepting and not gate.timers


def test_a_saturated_worker_stops_accepting_and_waits_once():
    gate, _ = saturated_gate()
    server = FakeServer()
    assert not gate.admits(server)
    assert not server.accepting and server in gate.deferring
    assert not gate.admits(server)  # asked again: still one wait, not two
    assert len(gate.timers) == 1 and gate.timers[0][0] == pytest.approx(100 + DEFER)


def test_a_checkin_resumes_accepting_at_once():
    gate, pool = saturated_gate()
    server = FakeServer()
    gate.admits(server)
    pool.out = 4
    gate.claim_ended()  # SQLAlchemy's checkin event
    assert server.accepting and not gate.deferring
    assert gate.admits(server)


def test_a_connection_nobody_took_within_the_wait_is_accepted_and_so_is_what_follows_for_a_while():
    """Every worker saturated: /healthz and the excess still get in, at most DEFER late."""
    gate, _ = saturated_gate()
    server = FakeServer(pending=True)
    gate.admits(server)
    gate.now += DEFER
    gate.fire_timers()
    assert server.accepting
    assert gate.admits(server) and gate.admits(server)  # the window: no wait per connection
    gate.now += DEFER
    assert not gate.admits(server) and not server.accepting  # judged again


def test_a_connection_another_worker_took_meanwhile_opens_no_window():
    gate, _ = saturated_gate()
    server = FakeServer(pending=False)
    gate.admits(server)
    gate.now += DEFER
    gate.fire_timers()
    assert server.accepting  # watching again, to judge the next one
    assert not gate.admits(server)
    assert len(gate.timers) == 1  # a new wait for the new connection


def test_the_wait_counts_from_the_first_deferral_through_resumes_that_found_no_connection():
    gate, _ = saturated_gate()
    server = FakeServer()
    gate.admits(server)
    gate.now += DEFER / 2
    gate.claim_ended()  # e.g. a fresh connection's request started, still saturated
    assert not gate.admits(server)
    gate.now += DEFER / 2
    gate.fire_timers()
    assert gate.admits(server)


def test_a_stale_wait_does_not_open_a_later_deferral_early():
    gate, pool = saturated_gate()
    server = FakeServer()
    gate.admits(server)
    pool.out = 4
    gate.claim_ended()
    assert gate.admits(server)  # not saturated: the deferral is over
    pool.out = 5
    gate.now += DEFER * 0.9
    assert not gate.admits(server)  # a new deferral, its own wait
    gate.now += DEFER * 0.1
    gate.fire_timers()  # the first wait's timer: stale
    assert not server.accepting and not gate.admits(server)
    gate.now += DEFER
    gate.fire_timers()
    assert gate.admits(server)


def test_a_wait_that_ends_after_the_server_closed_leaves_its_socket_alone():
    gate, _ = saturated_gate()
    server = FakeServer()
    gate.admits(server)
    server.started = False  # the worker stopping: gevent closed the listener
    gate.now += DEFER
    gate.fire_timers()
    assert not server.accepting


def test_without_a_wait_only_a_checkin_resumes():
    gate, _ = saturated_gate(defer=None)
    server = FakeServer()
    assert not gate.admits(server) and not gate.timers
    gate.claim_ended()
    assert server.accepting


def test_connections_whose_request_has_not_started_are_claims():
    """Accepted a moment ago, its request not sent yet: it may want a connection."""
    gate, pool = saturated_gate(fresh=2)
    pool.out = 3
    assert gate.saturated()
    gate.fresh_count = 1
    assert not gate.saturated()


def test_a_server_closed_meanwhile_is_not_restarted():
    gate, _ = saturated_gate()
    server = FakeServer()
    gate.admits(server)
    server.started = False
    gate.claim_ended()
    assert not server.accepting


@pytest.mark.parametrize(
    ("workers", "reuse_port", "gate", "wanted"),
    [(2, False, True, True), (1, False, True, False), (2, True, True, False), (2, False, False, False)],
)
def test_the_gate_runs_only_where_another_worker_can_take_the_connection(workers, reuse_port, gate, wanted):
    worker = SimpleNamespace(database_gate=gate, cfg=SimpleNamespace(workers=workers, reuse_port=reuse_port))
    assert BalancedGeventWorker.wants_gate(worker) is wanted  # sqlalchemy is imported here


def test_pools_without_a_bound_never_saturate():
    assert capacity(FakePool(5, max_overflow=-1)) is None
    assert capacity(FakePool(5, max_overflow=3)) == 8
    assert capacity(NullPool(lambda: None)) is None
    gate = Gate()
    gate.checked_out(None, None, type("Proxy", (), {"_pool": FakePool(5, max_overflow=-1, checkedout=99)})())
    assert not gate.pools and not gate.saturated()


def test_the_gate_learns_a_real_pool_from_its_checkout_and_resumes_on_its_checkin(tmp_path):
    """SQLAlchemy's events at the Pool class level, and QueuePool's count, as the worker reads them."""
    gate = Gate()
    gate.listen()
    # Made after the gate started (as an app's first request may make one):
    # known from its first checkout. Other tests' pools may be alive here too.
    engine = create_engine(f"sqlite:///{tmp_path / 'db'}", poolclass=QueuePool, pool_size=2, max_overflow=0)
    try:
        assert engine.pool not in set(gate.pools)
        first = engine.connect()
        assert engine.pool in set(gate.pools) and not gate.saturated()
        second = engine.connect()
        assert gate.saturated()
        server = FakeServer()
        assert not gate.admits(server)
        second.close()  # the checkin
        assert server.accepting and not gate.saturated()
        first.close()
    finally:
        event.remove(Pool, "checkout", gate.checked_out)
        event.remove(Pool, "checkin", gate.claim_ended)
        engine.dispose()


def test_fresh_connections_are_counted_until_their_first_request_starts():
    pool = RequestSlotPool(10)
    RequestSlotPool.instances.remove(pool)  # not one of a worker's
    greenlet = pool.spawn(lambda: None)  # not run: no hub loop turns in this test
    try:
        assert pool.fresh() == 1
        assert pool.request_starting(greenlet) is True and pool.fresh() == 0
        pool.request_finished(greenlet)
        assert pool.fresh() == 0  # idle, kept alive
        assert pool.request_starting(greenlet) is False  # a later request on it
        pool.request_finished(greenlet)
    finally:
        pool.kill()
    assert pool.fresh() == 0 and len(pool) == 0


def test_the_pools_the_app_made_as_it_loaded_are_known_before_any_checkout(tmp_path):
    """A cold worker's first burst is gated: the gate finds the pools alive when it starts."""
    engine = create_engine(f"sqlite:///{tmp_path / 'db'}", poolclass=QueuePool, pool_size=1, max_overflow=0)
    gate = Gate()
    gate.listen()
    try:
        assert engine.pool in set(gate.pools)
    finally:
        event.remove(Pool, "checkout", gate.checked_out)
        event.remove(Pool, "checkin", gate.claim_ended)
        engine.dispose()


def test_a_pool_without_a_limit_never_saturates(tmp_path):
    """pool_size 0 is SQLAlchemy's "no limit", as max_overflow -1 is."""
    for options in ({"pool_size": 0, "max_overflow": 0}, {"pool_size": 1, "max_overflow": -1}):
        engine = create_engine(f"sqlite:///{tmp_path / 'db'}", poolclass=QueuePool, **options)
        assert capacity(engine.pool) is None
        engine.dispose()
