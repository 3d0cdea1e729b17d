"""gunicorn's gevent worker, counting requests in progress, not connections held.

WORKER_CLASS=gevent runs this class (serving/gunicorn_conf.py). Stock gevent
gives each connection a slot of `worker_connections` for its whole life, and
stops accepting when they are all taken. Behind nginx, whose upstream
keep-alive pool keeps connections open between requests, idle connections
hold slots that requests then lack: with 2 workers of 100, a burst of 400
three-second requests ran 200 at once at first, but the second round found
slots taken by nginx's idle connections and needed a third.

Here a slot is held while a request is in progress: from the accept (the
first request follows at once) to its response, then again from each later
request on the connection to its response. A worker whose slots are all
taken stops accepting, so the kernel gives the next connection to a worker
that can start it; a request arriving meanwhile on a connection the worker
already holds waits for one of its slots. An idle connection holds none, so
the number of connections is bounded by nginx (its keep-alive pool plus the
requests in flight), not by `worker_connections`.

gevent's server stops and restarts accepting through its pool's semaphore
(gevent.baseserver uses `pool._semaphore`), which is what makes the pool
below the whole mechanism: stock Pool acquires it when a connection's
greenlet starts and releases it when that greenlet ends; this one also
releases it while the connection is idle.

A slot is not a database connection, though. With a SQLAlchemy pool of 5
per worker, a burst of 10 slow queries could land 6 and 4, or all 10 on one
worker, which then queued the excess on its pool while the other worker's
pool sat idle: two rounds instead of one. So a worker whose pool is all
claimed also stops accepting for a while (DatabaseGate below): the kernel
gives the connections meanwhile to a worker that still has one free, and
the burst runs at the design degree (docs/concurrency.md, "A burst on a
gevent worker's pool", measured by `python -m bench.burst`). It only
defers: a connection still waiting after `database_defer` (50 ms; no other
worker took it: they are all saturated too) is accepted, and so is what
comes in the next 50 ms, so /healthz and every request that needs no
database are still served, at most about 50 ms later, and a database
request beyond every pool waits DATABASE_POOL_TIMEOUT in a pool for its
JSON 503, as before.

gunicorn loads the class in the master, as it loads its own gevent worker:
gevent is imported there but patches nothing until the worker starts.
"""

# Beyond their public API, this file relies on `baseserver.BaseServer`,
# `BaseServer._do_read`, `QueuePool.checkedout`, `QueuePool._do_get`,
# `QueuePool.__init__`: serving/internals.py checks them (at start for the
# worker class in use, and first in the test suite).

from __future__ import annotations

import gc
import sys
import time
import weakref

import gevent
from gevent import getcurrent
from gevent.pool import Group, Pool
from gevent.select import select
from gevent.server import StreamServer
from gunicorn.workers import ggevent

from serving import internals


class RequestSlotPool(Pool):
    """A Pool whose slots are requests in progress, not member greenlets."""

    #: The pools of this process: gunicorn builds one per listener.
    instances: list[RequestSlotPool] = []

    def __init__(self, size: int) -> None:
        super().__init__(size)
        #: Connection greenlets waiting for their next request, slot released.
        self.idle: set = set()
        #: Requests in progress.
        self.serving = 0
        RequestSlotPool.instances.append(self)

    @classmethod
    def all_fresh(cls) -> int:
        return sum(pool.fresh() for pool in cls.instances)

    def fresh(self) -> int:
        """Connections accepted whose first request has not started: sent or not, it may want the database."""
        return len(self) - len(self.idle) - self.serving

    def full(self) -> bool:
        return self._semaphore.locked()

    def _discard(self, greenlet) -> None:
        Group._discard(self, greenlet)
        if greenlet in self.idle:
            self.idle.discard(greenlet)  # its slot was released when it went idle
        else:
            self._semaphore.release()

    def request_starting(self, greenlet) -> bool:
        """True when this is the connection's first request (it was fresh)."""
        self.serving += 1
        if greenlet in self.idle:  # a later request on a kept-alive connection
            self._semaphore.acquire()
            self.idle.discard(greenlet)
            return False
        return True

    def request_finished(self, greenlet) -> None:
        self.serving -= 1
        self.idle.add(greenlet)
        self._semaphore.release()


class DatabaseGate:
    """Whether this worker should accept a connection now, judged by its
    SQLAlchemy pools: not while every connection of one is claimed, unless a
    connection has waited `defer` seconds and no other worker took it (they
    are all saturated): then this worker accepts whatever comes for the next
    `defer` seconds, and judges again.

    Claimed: checked out, or possibly about to be. The pools are learnt from
    SQLAlchemy's checkout event at the Pool class level (every pool of the
    process, however the app makes its engines), and read at each accept
    through QueuePool's checkedout(), which counts a connection from the
    moment a request takes it, before the pre-ping or the connect. A request
    runs from its start to its checkout without yielding to the loop (no I/O
    before), but a connection accepted a moment ago may not have sent its
    request yet, and may want a database connection once it has: those
    (`fresh`, from RequestSlotPool) are claims too, until their request
    starts. Without them, one worker of two took 6 of a burst of 10 in 2 of
    the first 5 bursts. The pools are the ones the app made as it was loaded,
    found at start, and any made later, from its first checkout. Pools
    without a bound (NullPool, max_overflow
    -1) never saturate."""

    def __init__(self, defer: float | None, fresh=lambda: 0, clock=time.monotonic) -> None:
        #: Seconds a connection is left to the other workers; None: until a
        #: connection is checked in (starves /healthz when all are saturated).
        self.defer = defer
        self.fresh = fresh
        self.clock = clock
        self.pools: weakref.WeakSet = weakref.WeakSet()
        #: Servers that stopped accepting here, waiting for a claim to end or `defer`.
        self.deferring: set = set()
        #: When each server's connection was first deferred: `defer` counts from then.
        self.since: dict = {}
        #: Servers that accept, saturated or not, until then (a clock time):
        #: every worker was found saturated.
        self.open_until: dict = {}

    def listen(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        event.listen(Pool, "checkout", self.checked_out)
        event.listen(Pool, "checkin", self.claim_ended)
        # The pools the app made as it was loaded (before this, in the
        # worker), as serving/pools.py finds them: a cold worker's first
        # burst is gated too, before any checkout has named them.
        for pool in [o for o in gc.get_objects() if isinstance(o, Pool)]:
            if capacity(pool) is not None:
                self.pools.add(pool)

    def checked_out(self, dbapi_connection, record, proxy) -> None:
        # The event does not name its pool; the proxy (_ConnectionFairy) holds it.
        pool = getattr(proxy, "_pool", None)
        if pool is not None and pool not in self.pools and capacity(pool) is not None:
            self.pools.add(pool)

    def claim_ended(self, dbapi_connection=None, record=None) -> None:
        """A claim ended (a connection is free, a fresh connection's request
        started): every server deferring here accepts again, and judges
        again at its next accept."""
        for server in list(self.deferring):
            self.resume(server)

    def saturated(self) -> bool:
        fresh = self.fresh()
        return any(pool.checkedout() + fresh >= capacity(pool) for pool in list(self.pools))

    def admits(self, server) -> bool:
        """Called before each accept: True, accept; False, the server has
        stopped accepting, and starts again when a claim ends or after `defer`."""
        if not self.saturated():
            self.since.pop(server, None)
            return True
        if self.clock() < self.open_until.get(server, 0):
            return True
        server.stop_accepting()
        self.deferring.add(server)
        if server not in self.since:
            since = self.since[server] = self.clock()
            if self.defer is not None:
                self.later(self.defer, self.waited, server, since)
        return False

    def waited(self, server, since: float) -> None:
        if self.since.get(server) != since:
            return  # accepted meanwhile: a later deferral has its own
        del self.since[server]
        if not server.started:
            return  # closed meanwhile (the worker is stopping): its socket with it
        if self.pending(server):  # still there after `defer`: no other worker could take it
            self.open_until[server] = self.clock() + self.defer
        self.resume(server)

    def resume(self, server) -> None:
        self.deferring.discard(server)
        if server.started:
            server.start_accepting()

    def later(self, seconds: float, function, *args) -> None:
        gevent.spawn_later(seconds, function, *args)

    def pending(self, server) -> bool:
        """A connection waits to be accepted on the server's socket."""
        return bool(select([server.socket], [], [], 0)[0])


def capacity(pool) -> int | None:
    """How many connections a SQLAlchemy pool hands out at most; None: no bound."""
    size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", -1)
    if not callable(size) or not hasattr(pool, "checkedout") or overflow < 0 or size() <= 0:
        return None  # pool_size 0 is SQLAlchemy's "no limit"
    return size() + overflow


class DatabaseGatedServer(StreamServer):
    """gevent's server, asking the worker's DatabaseGate before each accept.

    do_read() is the accept itself; returning None is "nothing to accept",
    after which gevent's _do_read() simply returns. The gate has stopped the
    watcher by then, so the loop does not spin on the pending connection."""

    gate: DatabaseGate | None = None

    def do_read(self):
        if self.gate is not None and not self.gate.admits(self):
            return None
        return super().do_read()


class BalancedGeventWorker(ggevent.GeventWorker):
    #: How long a worker whose database pool is saturated leaves a new
    #: connection to the other workers, s: long enough for an idle one to
    #: take it (microseconds), short enough that /healthz and requests
    #: without a database barely notice when every worker is saturated.
    database_defer: float | None = 0.05
    #: False: accept by request slots alone (the lab's "before").
    database_gate = True
    gate: DatabaseGate | None = None

    def run(self) -> None:
        # gunicorn's run() builds each listener's pool and server by these
        # module-level names; replaced in this worker process only, before it does.
        ggevent.Pool = RequestSlotPool
        if self.wants_gate() and self._database_internals_hold():
            self.gate = DatabaseGate(self.database_defer, fresh=RequestSlotPool.all_fresh)
            self.gate.listen()
            DatabaseGatedServer.gate = self.gate
            ggevent.StreamServer = DatabaseGatedServer
        super().run()

    def wants_gate(self) -> bool:
        """Only where another worker can take what this one defers: several
        workers on one shared listener (with reuse_port each has its own
        queue, and a deferred connection would only wait in it), and only
        for an app that loaded SQLAlchemy (by now: run() follows the app's load)."""
        return self.database_gate and self.cfg.workers > 1 and not self.cfg.reuse_port and "sqlalchemy" in sys.modules

    def _database_internals_hold(self) -> bool:
        """SQLAlchemy's internals the gate reads (serving/internals.py), checked
        here, in the worker, once the app has imported SQLAlchemy: the master
        must not import it. A broken one costs the balance, not the service:
        the worker accepts by request slots alone, and says so."""
        broken = [i for i in internals.INTERNALS if i.family == internals.DATABASE and i.problem()]
        for internal in broken:
            self.log.error(
                "the database gate is off: %s: %s; review %s", internal.name, internal.problem(), internal.relied_on_by
            )
        return not broken

    def handle_request(self, listener_name, req, sock, addr):
        greenlet = getcurrent()
        pool = next((p for p in RequestSlotPool.instances if greenlet in p), None)
        if pool is None:  # not a connection greenlet of ours: leave it to gunicorn
            return super().handle_request(listener_name, req, sock, addr)
        if pool.request_starting(greenlet) and self.gate is not None and self.gate.deferring:
            self.gate.claim_ended()  # a fresh connection is a request now: one claim fewer, maybe
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            pool.request_finished(greenlet)
