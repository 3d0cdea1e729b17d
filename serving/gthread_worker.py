"""gunicorn's gthread worker, taking a new connection only while a thread is free.

WORKER_CLASS=gthread runs this class (serving/gunicorn_conf.py). Stock gthread
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

What is ready while every thread is busy waits its turn in one line, in
the order it became ready: a request on a kept-alive connection, and the
listener when connections wait to be accepted. Queuing kept-alive requests
on the threads at once, as stock gthread does, would leave the worker
never free to accept under sustained load: the kept-alive connections,
always ready with their next request, were served again and again while
new ones waited in the listen queue (through nginx, 4-8 % of 500
connections were answered in a 4 s run).

The listener's place in the line stands for every connection waiting in
its listen queue when it took it: those came before whatever joins the
line after, so the listener keeps the head until it has accepted that many
(one per free thread) or the queue is empty, and only then goes to the
back. As one place, it gave new connections one turn in each round of the
kept-alive ones, and under sustained overload only 11-13 % of 500
connections were answered in a 4 s run, against 45 % for stock gthread,
which serves every connection first come, first served. The queue's
length is Linux's (TCP_INFO on a listening socket); where that cannot be
read (a unix socket), the place stands for one connection.

What it cannot place is a request that arrives on a connection nginx has
kept alive to a busy worker: nginx, not the kernel, picks which cached
connection to reuse, and the request waits for that worker's threads. After
heavy traffic has spread nginx's idle connections unevenly, a burst can take
a round more than it needs (docs/concurrency.md). Closing connections from
this side to correct it ("Connection: close" while requests queue) was
tried and dropped: under sustained load every response then cost a new
connection, and after about 20 s the fast endpoint fell from about 2,200 to
770 requests/s.

gunicorn loads the class in the master, by the name serving/gunicorn_conf.py
gives it, so it imports nothing beyond gunicorn itself.
"""

# Beyond their public API, this file relies on `ThreadWorker.run`,
# `ThreadWorker.init_process`, `gthread.TConn`: serving/internals.py checks
# them (at start for the worker class in use, and first in the test suite).

from __future__ import annotations

import selectors
import socket
import struct
from collections import deque

from gunicorn.workers.gthread import ThreadWorker

#: Linux's struct tcp_info: for a listening socket, tcpi_unacked (a __u32
#: after eight single bytes and four __u32) is the length of its accept queue.
TCP_INFO_SIZE = 104
TCPI_UNACKED_OFFSET = 24


def accept_queue_length(listener) -> int:
    """Connections waiting to be accepted on `listener`: at least 1 (it was
    readable), and 1 where the kernel does not say (not Linux, not TCP)."""
    try:
        info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    except (AttributeError, OSError):
        return 1
    if len(info) < TCPI_UNACKED_OFFSET + 4:
        return 1
    return max(1, struct.unpack_from("I", info, TCPI_UNACKED_OFFSET)[0])


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        #: Requests handed to the thread pool and not finished yet. Everything
        #: here runs on the worker's main thread (gunicorn's event loop).
        self.in_threads = 0
        #: What is ready while no thread is free, oldest first: kept-alive
        #: connections with a request, and listeners with connections to accept.
        self.waiting: deque = deque()
        #: Listeners the poller watches now.
        self.watched: set = set()
        #: For a listener in the line: the connections its place stands for,
        #: still to be accepted before it gives up the head of the line.
        self.owed: dict = {}
        super().__init__(*args, **kwargs)

    def thread_free(self) -> bool:
        return self.in_threads < self.cfg.threads

    def enqueue_req(self, conn) -> None:
        self.in_threads += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        self.in_threads -= 1
        super().finish_request(conn, fs)
        self.start_waiting()

    def start_waiting(self) -> None:
        while self.waiting and self.thread_free():
            ready = self.waiting.popleft()
            if ready in self.sockets:
                self.take_listeners_turn(ready)
            else:
                self.enqueue_req(ready)

    def take_listeners_turn(self, listener) -> None:
        """Accept one connection; the listener keeps the head of the line
        while its place stands for more, and is watched again otherwise."""
        accepted = False
        if self._accepting:  # not once the worker is stopping
            before = self.nr_conns
            super().accept(listener)
            accepted = self.nr_conns > before  # not when the queue was empty
        self.owed[listener] -= 1
        if accepted and self.owed[listener] > 0:
            self.waiting.appendleft(listener)
        else:
            del self.owed[listener]
            self.watch_listeners()

    # --- listeners ----------------------------------------------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop wants to accept while it holds fewer than
        # worker_connections connections; a listener that is in the line
        # waits for its turn there instead of being watched.
        self._accepting = enabled
        self.watch_listeners()

    def watch_listeners(self) -> None:
        for listener in self.sockets:
            wanted = self._accepting and listener not in self.waiting
            if wanted and listener not in self.watched:
                listener.setblocking(False)
                self.poller.register(listener, selectors.EVENT_READ, self.accept)
                self.watched.add(listener)
            elif not wanted and listener in self.watched:
                self.poller.unregister(listener)
                self.watched.discard(listener)

    def accept(self, listener) -> None:
        if self.thread_free():
            super().accept(listener)
        else:
            self.owed[listener] = accept_queue_length(listener)
            self.waiting.append(listener)
            self.watch_listeners()

    # --- kept-alive and deferred connections ---------------------------------

    def on_client_socket_readable(self, conn, client) -> None:
        if self.thread_free():
            super().on_client_socket_readable(conn, client)
        else:
            self.poller.unregister(client)
            self.keepalived_conns.remove(conn)
            self.waiting.append(conn)

    def on_pending_socket_readable(self, conn, client) -> None:
        if self.thread_free():
            super().on_pending_socket_readable(conn, client)
        else:
            self.poller.unregister(client)
            self.pending_conns.remove(conn)
            conn.data_ready = True
            self.waiting.append(conn)
