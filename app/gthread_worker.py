"""gunicorn's gthread worker, taking a new connection only while a thread is free.

WORKER_CLASS=gthread runs this class (app/gunicorn_conf.py). Stock gthread
accepts connections until it holds `worker_connections` (1000) of them and
queues their requests on its few threads, so under a burst the worker that
wakes first takes most of it while the others sit idle: with 2 workers of 4
threads, 16 one-second requests took 3-4 s, not 2. Lowering
`worker_connections` to the thread count balances the burst, but idle
keep-alive connections from nginx then fill those few slots too, and the
fast endpoint fell from 3,241 to 547 requests/s.

This worker counts the requests its threads hold instead: while every thread
has one, it stops accepting, and the kernel hands the next connection to a
worker that can start it now. Idle keep-alive connections cost nothing, and
the fast endpoint keeps stock gthread's throughput.

What it cannot place is a request that arrives on a connection nginx has
kept alive to a busy worker: nginx, not the kernel, picks which cached
connection to reuse, and the request queues on that worker's threads. After
heavy traffic has spread nginx's idle connections unevenly, a burst can take
a round more than it needs (docs/concurrency.md). Closing connections from
this side to correct it ("Connection: close" while requests queue) was
tried and dropped: under sustained load every response then cost a new
connection, and after about 20 s the fast endpoint fell from about 2,200 to
770 requests/s.

gunicorn loads the class in the master, by the name app/gunicorn_conf.py
gives it, so it imports nothing beyond gunicorn itself.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        #: Requests handed to the thread pool and not finished yet; counted on
        #: the worker's main thread only (enqueue and finish both run there).
        self.in_threads = 0
        super().__init__(*args, **kwargs)

    def enqueue_req(self, conn) -> None:
        self.in_threads += 1
        super().enqueue_req(conn)
        if self.in_threads >= self.cfg.threads:
            super().set_accept_enabled(False)

    def finish_request(self, conn, fs) -> None:
        self.in_threads -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop asks for accepting whenever it holds fewer than
        # worker_connections connections; a free thread is needed as well.
        super().set_accept_enabled(enabled and self.in_threads < self.cfg.threads)
