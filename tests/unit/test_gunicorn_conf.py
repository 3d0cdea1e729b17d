"""serving.gunicorn_conf, loaded by gunicorn's own machinery, and a real gunicorn.

Every case runs in a subprocess: the config module reads the environment at
import time, and gunicorn's Config reads sys.argv and GUNICORN_CMD_ARGS.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter

import pytest

from serving.settings import available_cpus
from tests.concurrency import fire, max_overlap, rounds

pytestmark = pytest.mark.unit

#: Loads the configuration exactly as `gunicorn -c python:serving.gunicorn_conf
#: [ARGS]` does, without starting the arbiter, and prints what it parsed.
LOAD_CONFIG = r"""
import json, sys
extra = json.loads(sys.argv[1])
sys.argv = ["gunicorn", "-c", "python:serving.gunicorn_conf", *extra]
from gunicorn.app.wsgiapp import WSGIApplication
cfg = WSGIApplication().cfg
import serving.gunicorn_conf as conf
names = [
    "workers", "threads", "worker_connections", "timeout", "graceful_timeout", "keepalive",
    "max_requests", "max_requests_jitter", "bind", "forwarded_allow_ips", "worker_tmp_dir",
    "control_socket", "preload_app", "loglevel", "accesslog", "errorlog", "proc_name", "wsgi_app",
]
print(json.dumps({
    "cfg": {name: cfg.settings[name].get() for name in names},
    "worker_class_str": cfg.worker_class_str,
    "hooks": {
        "on_starting": cfg.settings["on_starting"].get() is conf.on_starting,
        "worker_abort": cfg.settings["worker_abort"].get() is conf.worker_abort,
    },
    "effective": conf.effective_config(cfg),
}))
"""


@pytest.fixture
def load_config(helpers, env_factory):
    """load_config(*cli_args, **env) -> the JSON LOAD_CONFIG prints."""

    def load(*cli_args: str, **env: str) -> dict:
        result = helpers.run_python(["-c", LOAD_CONFIG, json.dumps(list(cli_args))], env_factory(**env))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    return load


@pytest.fixture
def config_error(helpers, env_factory):
    """config_error(**env) -> stderr of a config load that must fail with status 2."""

    def run(**env: str) -> str:
        result = helpers.run_python(["-c", LOAD_CONFIG, "[]"], env_factory(**env))
        assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        return lines[0]

    return run


# --- loading the config --------------------------------------------------------


def test_gevent_config(load_config):
    out = load_config(WORKER_CLASS="gevent", WEB_CONCURRENCY="3")
    cfg = out["cfg"]
    # gevent, counting requests in progress, not connections (serving/gevent_worker.py).
    assert out["worker_class_str"] == "serving.gevent_worker.BalancedGeventWorker"
    assert cfg["workers"] == 3
    assert cfg["threads"] == 1
    assert cfg["worker_connections"] == 1000
    assert cfg["control_socket"] == "/tmp/gunicorn.ctl"  # noqa: S108 - the value under test
    assert cfg["worker_tmp_dir"] == "/dev/shm"  # noqa: S108 - the value under test
    assert cfg["preload_app"] is False
    assert cfg["bind"] == ["0.0.0.0:8000"]
    assert cfg["timeout"] == 30
    assert cfg["graceful_timeout"] == 30
    assert cfg["keepalive"] == 75
    assert cfg["loglevel"] == "info"
    assert cfg["accesslog"] is None
    assert cfg["errorlog"] == "-"
    assert cfg["proc_name"] == "demo.wsgi"  # APP_MODULE's module
    assert cfg["wsgi_app"] == "serving.wsgi:application"
    assert out["hooks"] == {"on_starting": True, "worker_abort": True}
    effective = out["effective"]
    assert effective["worker_class"] == "gevent"
    assert effective["workers"] == 3
    assert effective["max_concurrent_requests"] == 3 * 1000


def test_defaults_size_workers_from_available_cpus(load_config):
    out = load_config()
    effective = out["effective"]
    cpus = effective["cpus_available"]
    # The config was loaded on this machine, in a child of this process.
    assert isinstance(cpus, int) and cpus == available_cpus()
    assert out["worker_class_str"] == "sync"
    assert out["cfg"]["workers"] == 2 * cpus + 1
    assert out["cfg"]["threads"] == 1
    assert effective["max_concurrent_requests"] == 2 * cpus + 1


def test_gthread_config(load_config):
    out = load_config(WORKER_CLASS="gthread", WEB_CONCURRENCY="2", GUNICORN_THREADS="3")
    # gthread, taking a connection only while a thread is free (serving/gthread_worker.py).
    assert out["worker_class_str"] == "serving.gthread_worker.BalancedThreadWorker"
    assert (out["effective"]["worker_class"], out["effective"]["worker"]) == ("gthread", out["worker_class_str"])
    assert (out["cfg"]["workers"], out["cfg"]["threads"]) == (2, 3)
    assert out["effective"]["max_concurrent_requests"] == 6


def test_every_setting_reaches_gunicorn(load_config):
    out = load_config(
        WORKER_CLASS="gevent",
        WEB_CONCURRENCY="2",
        GUNICORN_WORKER_CONNECTIONS="50",
        GUNICORN_TIMEOUT="20",
        GUNICORN_GRACEFUL_TIMEOUT="10",
        GUNICORN_KEEPALIVE="5",
        GUNICORN_MAX_REQUESTS="100",
        GUNICORN_MAX_REQUESTS_JITTER="10",
        GUNICORN_BIND="127.0.0.1:9999",
        FORWARDED_ALLOW_IPS="10.0.0.2",
        GUNICORN_LOG_LEVEL="warning",
        GUNICORN_ACCESS_LOG="true",
    )
    cfg = out["cfg"]
    assert cfg["worker_connections"] == 50
    assert (cfg["timeout"], cfg["graceful_timeout"], cfg["keepalive"]) == (20, 10, 5)
    assert (cfg["max_requests"], cfg["max_requests_jitter"]) == (100, 10)
    assert cfg["bind"] == ["127.0.0.1:9999"]
    assert cfg["forwarded_allow_ips"] == ["10.0.0.2"]
    assert cfg["loglevel"] == "warning"
    assert cfg["accesslog"] == "-"
    assert out["effective"]["max_concurrent_requests"] == 100


def test_effective_config_follows_command_line_overrides(load_config, tmp_path):
    # GUNICORN_CMD_ARGS and CLI flags beat the config file; the effective
    # configuration must report what gunicorn will really run: sync with
    # threads > 1 runs as gthread.
    out = load_config(
        "--control-socket",
        str(tmp_path / "elsewhere.ctl"),
        WORKER_CLASS="sync",
        WEB_CONCURRENCY="3",
        GUNICORN_CMD_ARGS="--workers 5 --threads 2",
    )
    assert out["worker_class_str"] == "gthread"
    effective = out["effective"]
    assert (effective["worker_class"], effective["workers"], effective["threads"]) == ("gthread", 5, 2)
    assert effective["max_concurrent_requests"] == 10
    assert effective["control_socket"] == str(tmp_path / "elsewhere.ctl")


def test_effective_config_names(load_config):
    effective = load_config(WORKER_CLASS="gthread")["effective"]
    assert set(effective) == {
        "worker_class",
        "worker",
        "workers",
        "threads",
        "worker_connections",
        "timeout",
        "graceful_timeout",
        "keepalive",
        "max_requests",
        "max_requests_jitter",
        "bind",
        "forwarded_allow_ips",
        "worker_tmp_dir",
        "control_socket",
        "preload_app",
        "loglevel",
        "accesslog",
        "max_concurrent_requests",
        "cpus_available",
        "database_pool_size",
        "database_connections_per_replica",
    }


# --- configuration errors --------------------------------------------------------


def test_invalid_worker_class_is_one_line_and_status_2(config_error):
    line = config_error(WORKER_CLASS="eventlet")
    assert line.startswith("configuration error: WORKER_CLASS='eventlet' is not valid: ")
    assert "sync, gthread, gevent" in line


def test_invalid_integer_is_one_line_and_status_2(config_error):
    line = config_error(GUNICORN_TIMEOUT="abc")
    assert line.startswith("configuration error: GUNICORN_TIMEOUT='abc' is not valid: ")


def test_out_of_range_workers_is_one_line_and_status_2(config_error):
    # Only values int() accepts: gunicorn itself evaluates
    # int(os.environ["WEB_CONCURRENCY"]) when gunicorn.config is imported, so
    # WEB_CONCURRENCY=abc dies with gunicorn's own ValueError traceback before
    # serving.gunicorn_conf is read (see test_settings.py for the app's check).
    line = config_error(WEB_CONCURRENCY="0")
    assert line.startswith("configuration error: WEB_CONCURRENCY='0' is out of range: ")


def test_threads_with_sync_is_one_line_and_status_2(config_error):
    line = config_error(WORKER_CLASS="sync", GUNICORN_THREADS="4")
    assert line.startswith("configuration error: GUNICORN_THREADS=4 ")


def test_gunicorn_cli_refuses_invalid_config(helpers, env_factory):
    # The real command line, not only WSGIApplication(): exit 2 before binding.
    port = helpers.free_port()
    result = helpers.run_python(
        ["-m", "gunicorn", "-c", "python:serving.gunicorn_conf", "--bind", f"127.0.0.1:{port}"],
        env_factory(WORKER_CLASS="tornado"),
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: WORKER_CLASS='tornado' is not valid: ")
    assert "sync, gthread, gevent" in lines[0]
    assert not helpers.is_listening(port)


# --- a real gunicorn ---------------------------------------------------------------


def overlapping(run, path: str, count: int) -> list[dict]:
    """GET `path` `count` times at once; the JSON bodies."""
    bodies: list[dict] = []
    errors: list[BaseException] = []

    def get():
        try:
            status, body = run.get(path)
            assert status == 200, body
            bodies.append(body)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=get) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    assert not errors, errors
    assert len(bodies) == count
    return bodies


def assert_concurrent(bodies: list[dict]) -> None:
    # The server's own clocks: every request started before any finished.
    assert max(b["started_at"] for b in bodies) < min(b["finished_at"] for b in bodies), bodies


def wait_for_path(path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not created within {timeout} s"
        time.sleep(0.05)


def check_config_line(run, **expected) -> dict:
    lines = run.config_lines()
    assert len(lines) == 1, run.log.read_text()
    line = lines[0]
    for name, value in expected.items():
        assert line[name] == value, (name, line)
    assert line["bind"] == [f"127.0.0.1:{run.port}"]
    assert line["control_socket"] == str(run.control_socket)
    assert line["worker_tmp_dir"] == "/dev/shm"  # noqa: S108 - the value under test
    assert line["preload_app"] is False
    # gunicorn runs on this machine, in a child of this process.
    assert isinstance(line["cpus_available"], int) and line["cpus_available"] == available_cpus()
    return line


def test_real_gunicorn_gthread(gunicorn):
    with gunicorn(WORKER_CLASS="gthread", WEB_CONCURRENCY="2", GUNICORN_THREADS="3") as run:
        check_config_line(
            run,
            worker_class="gthread",
            workers=2,
            threads=3,
            worker_connections=1000,
            max_concurrent_requests=6,
        )
        status, body = run.get("/")
        assert (status, body) == (200, {"service": "flask-concurrency", "status": "ok"})
        wait_for_path(run.control_socket)  # the arbiter opens it after spawning workers
        assert_concurrent(overlapping(run, "/work/io?ms=500", 3))
    assert run.proc.returncode == 0
    assert "Traceback" not in run.log.read_text()


def test_real_gunicorn_gthread_spreads_a_burst_over_its_workers(gunicorn):
    """2 workers of 2 threads, 8 requests at once on new connections: two
    rounds of 4, each worker serving 4. (Stock gthread accepts up to
    worker_connections, so the worker that wakes first queues most of a burst
    on its own threads: 3 or 4 rounds, 10-16 requests on one worker.)"""
    with gunicorn(WORKER_CLASS="gthread", WEB_CONCURRENCY="2", GUNICORN_THREADS="2") as run:
        url = f"http://127.0.0.1:{run.port}/work/io"
        deadline = time.monotonic() + 15
        while len({r.body["worker"] for r in fire(f"{url}?ms=200", 4)}) < 2:  # both workers booted
            assert time.monotonic() < deadline, "the second worker never answered"
        results = fire(f"{url}?ms=500", 8)
    assert all(r.status == 200 for r in results)
    assert max_overlap([r.interval for r in results]) == 4
    assert rounds(results) == 2
    assert sorted(Counter(r.body["worker"] for r in results).values()) == [4, 4]


def test_real_gunicorn_gthread_serves_a_new_connection_while_kept_alive_ones_keep_it_busy(gunicorn):
    """One worker of 2 threads and 6 kept-alive connections sending request
    after request (as nginx's upstream pool does under load): a request on a
    new connection is still served while they go on. (When kept-alive
    requests queue on the threads at once, as in stock gthread's loop, the
    worker is never without a queue, so it never accepts again: the new
    connection waits in the listen queue until the busy ones stop.)"""
    with gunicorn(WORKER_CLASS="gthread", WEB_CONCURRENCY="1", GUNICORN_THREADS="2") as run:
        busy = [http.client.HTTPConnection("127.0.0.1", run.port, timeout=30) for _ in range(6)]
        stop = threading.Event()
        failures: list[BaseException] = []

        def keep_busy(connection: http.client.HTTPConnection) -> None:
            try:
                while not stop.is_set():
                    connection.request("GET", "/work/io?ms=100")
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200 and not response.will_close
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        try:
            for connection in busy:  # accepted one after the other, then kept alive
                connection.request("GET", "/healthz")
                connection.getresponse().read()
            loops = [threading.Thread(target=keep_busy, args=(c,)) for c in busy]
            for loop in loops:
                loop.start()
            time.sleep(0.5)
            answered = threading.Event()
            newcomer = threading.Thread(target=lambda: run.get("/work/io?ms=0") and answered.set())
            newcomer.start()
            # Waiting its turn among the 6 takes a few rounds of 100 ms.
            served_meanwhile = answered.wait(timeout=8)
            stop.set()
            for loop in loops:
                loop.join(timeout=10)
            newcomer.join(timeout=30)
        finally:
            stop.set()
            for connection in busy:
                connection.close()
    assert not failures, failures
    assert served_meanwhile, "the new connection was served only after the kept-alive ones stopped"


def test_real_gunicorn_gthread_serves_queued_connections_before_later_kept_alive_requests(gunicorn):
    """One worker of 2 threads, 4 kept-alive connections sending 100 ms
    request after request, then 6 new connections at once. The 6 were
    waiting in the listen queue before the kept-alive requests that became
    ready after them, so they are served first: the kept-alive connections
    get one or two more turns each meanwhile (4-8 answers seen). (With the
    listener holding one place in the line, each new connection got one turn
    per round of the 4 kept-alive ones: 18 kept-alive answers before the
    last new one, and under sustained overload a fraction of the clients
    were ever answered.)"""
    with gunicorn(WORKER_CLASS="gthread", WEB_CONCURRENCY="1", GUNICORN_THREADS="2") as run:
        busy = [http.client.HTTPConnection("127.0.0.1", run.port, timeout=30) for _ in range(4)]
        stop = threading.Event()
        answered_at: list[float] = []  # kept-alive answers, when each came
        failures: list[BaseException] = []

        def keep_busy(connection: http.client.HTTPConnection) -> None:
            try:
                while not stop.is_set():
                    connection.request("GET", "/work/io?ms=100")
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200 and not response.will_close
                    answered_at.append(time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        def newcomer(sock: socket.socket, done: list[float]) -> None:
            sock.sendall(b"GET /work/io?ms=100 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 "), reply[:100]
            done.append(time.monotonic())

        try:
            for connection in busy:  # accepted one after the other, then kept alive
                connection.request("GET", "/healthz")
                connection.getresponse().read()
            loops = [threading.Thread(target=keep_busy, args=(c,)) for c in busy]
            for loop in loops:
                loop.start()
            time.sleep(0.5)
            started = time.monotonic()
            # Connected at once: the kernel queues them, all ready before the worker accepts one.
            socks = [socket.create_connection(("127.0.0.1", run.port), timeout=30) for _ in range(6)]
            done: list[float] = []
            newcomers = [threading.Thread(target=newcomer, args=(sock, done)) for sock in socks]
            for thread in newcomers:
                thread.start()
            for thread in newcomers:
                thread.join(timeout=30)
            stop.set()
            for loop in loops:
                loop.join(timeout=10)
        finally:
            stop.set()
            for connection in busy:
                connection.close()
    assert not failures, failures
    assert len(done) == 6, "a new connection was not answered"
    meanwhile = sum(started < t <= max(done) for t in answered_at)
    # The line's head when the 6 arrived: the 2 in the threads and the 2
    # kept-alive requests already waiting (4), and a round more when the
    # listener took its place before all 6 were queued; 12 leaves room for
    # a slow machine and still fails the one-place design (18).
    assert meanwhile <= 12, f"{meanwhile} kept-alive answers before the last of 6 queued connections"


def test_real_gunicorn_gevent_counts_requests_not_idle_connections(gunicorn):
    """One gevent worker with 2 slots and 2 idle kept-alive connections (as
    nginx's upstream pool keeps them): a new request is still served at once.
    (Stock gevent gives each connection a slot for its whole life, so it
    would wait until an idle one closed, GUNICORN_KEEPALIVE later.)"""
    with gunicorn(WORKER_CLASS="gevent", WEB_CONCURRENCY="1", GUNICORN_WORKER_CONNECTIONS="2") as run:
        idle = [http.client.HTTPConnection("127.0.0.1", run.port, timeout=5) for _ in range(2)]
        try:
            for connection in idle:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                assert response.status == 200 and not response.will_close
            started = time.monotonic()
            assert run.get("/work/io?ms=0")[0] == 200
            assert time.monotonic() - started < 2
            # And the idle connections still serve their next request.
            for connection in idle:
                connection.request("GET", "/healthz")
                assert connection.getresponse().status == 200
        finally:
            for connection in idle:
                connection.close()


def test_real_gunicorn_gevent(gunicorn):
    # One worker: concurrency can only come from gevent's greenlets.
    with gunicorn(WORKER_CLASS="gevent", WEB_CONCURRENCY="1") as run:
        check_config_line(run, worker_class="gevent", workers=1, threads=1, max_concurrent_requests=1000)
        assert run.get("/")[0] == 200
        bodies = overlapping(run, "/work/io?ms=500", 4)
        assert len({b["worker"] for b in bodies}) == 1
        assert_concurrent(bodies)
    assert run.proc.returncode == 0
    assert "Traceback" not in run.log.read_text()


# --- gunicorn's own error page ---------------------------------------------------

WRITE_ERROR = r"""
import json, socket, sys
sys.argv = ["gunicorn", "-c", "python:serving.gunicorn_conf"]
from gunicorn.app.wsgiapp import WSGIApplication
WSGIApplication().cfg  # loads serving.gunicorn_conf, as gunicorn's master does
from gunicorn import util
ours, theirs = socket.socketpair()
util.write_error(ours, 400, "Bad Request", "Invalid HTTP Header: 'CONTENT-TYPE' <script>")
ours.close()
sys.stdout.write(theirs.recv(65536).hex())  # hex: the pipe would fold CRLF
"""


def test_gunicorns_own_error_page_is_json(helpers, env_factory):
    result = helpers.run_python(["-c", WRITE_ERROR], env_factory())
    assert result.returncode == 0, result.stderr
    answer = bytes.fromhex(result.stdout.strip()).decode("latin1")
    head, _, body = answer.partition("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request"
    assert "Content-Type: application/json" in lines and "Connection: close" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {
        "error": {
            "status": 400,
            "name": "Bad Request",
            "message": "Invalid HTTP Header: 'CONTENT-TYPE' <script>",
            "source": "gunicorn",
        }
    }
    assert "<html" not in body


#: In a process of its own: importing the config replaces gunicorn's error writer.
SIGTERM_IN_A_WORKER = r"""
import os, signal, time
from serving import lifecycle
import serving.gunicorn_conf as conf
seen = []
signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(lifecycle.is_draining()))
conf.post_worker_init(worker=None)
assert not lifecycle.is_draining()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.05)
print(seen)
"""


def test_sigterm_marks_the_worker_draining_then_runs_gunicorns_handler(helpers, env_factory):
    """post_worker_init chains the handler gunicorn installed: the flag
    first, then gunicorn's own stop."""
    # METRICS_PORT=0: with metrics on, post_worker_init would count a real worker.
    result = helpers.run_python(["-c", SIGTERM_IN_A_WORKER], env=env_factory(METRICS_PORT="0"))
    assert result.stdout.strip() == "[True]", result.stderr
