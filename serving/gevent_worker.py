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

gunicorn loads the class in the master, as it loads its own gevent worker:
gevent is imported there but patches nothing until the worker starts.
"""

from __future__ import annotations

from gevent import getcurrent
from gevent.pool import Group, Pool
from gunicorn.workers import ggevent


class RequestSlotPool(Pool):
    """A Pool whose slots are requests in progress, not member greenlets."""

    #: The pools of this process: gunicorn builds one per listener.
    instances: list[RequestSlotPool] = []

    def __init__(self, size: int) -> None:
        super().__init__(size)
        #: Connection greenlets waiting for their next request, slot released.
        self.idle: set = set()
        RequestSlotPool.instances.append(self)

    def full(self) -> bool:
        return self._semaphore.locked()

    def _discard(self, greenlet) -> None:
        Group._discard(self, greenlet)
        if greenlet in self.idle:
            self.idle.discard(greenlet)  # its slot was released when it went idle
        else:
            self._semaphore.release()

    def request_starting(self, greenlet) -> None:
        if greenlet in self.idle:  # a later request on a kept-alive connection
            self._semaphore.acquire()
            self.idle.discard(greenlet)

    def request_finished(self, greenlet) -> None:
        self.idle.add(greenlet)
        self._semaphore.release()


class BalancedGeventWorker(ggevent.GeventWorker):
    def run(self) -> None:
        # gunicorn's run() builds each listener's pool by this module-level
        # name; replaced in this worker process only, before it does.
        ggevent.Pool = RequestSlotPool
        super().run()

    def handle_request(self, listener_name, req, sock, addr):
        greenlet = getcurrent()
        pool = next((p for p in RequestSlotPool.instances if greenlet in p), None)
        if pool is None:  # not a connection greenlet of ours: leave it to gunicorn
            return super().handle_request(listener_name, req, sock, addr)
        pool.request_starting(greenlet)
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            pool.request_finished(greenlet)
