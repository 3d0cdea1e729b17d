"""Prometheus metrics against a real gunicorn with two workers, for each
worker class (serving/metrics.py, serving/metrics_master.py, serving/metrics_server.py):
the scrape adds up every worker's counts; gunicorn_workers and
gunicorn_worker_boots_total follow a worker killed with SIGKILL; the
metrics port answers while every worker is busy; recycled workers' counts
are kept exactly in an archive while the directory stays small; the master
never imports prometheus_client (gevent)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import metrics_master

pytestmark = pytest.mark.unit

TEST_APP = "tests.unit.testapp:application"
ITEMS = "/_test/items/<int:item>"


class Scrape:
    """One scrape of the metrics port, parsed by prometheus_client's parser."""

    def __init__(self, port: int, timeout: float = 2.0):
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:  # noqa: S310
            self.text = response.read().decode()
        self.seconds = time.monotonic() - started
        self.samples = [s for family in text_string_to_metric_families(self.text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of the samples named `name` whose labels include `labels`;
        None when there is none."""
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        return sum(found) if found else None


def scrape_until(port: int, check, timeout: float = 15.0) -> Scrape:
    """Scrape until check(scrape) is true; fail with the last scrape otherwise."""
    deadline = time.monotonic() + timeout
    last: Scrape | None = None
    while True:
        try:
            last = Scrape(port)
            if check(last):
                return last
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the scrape never satisfied the check:\n{last.text if last else '(no answer)'}")
        time.sleep(0.1)


def overlapping_gets(run, paths: list[str], timeout: float = 15.0) -> list[tuple[int, dict] | BaseException]:
    """GET every path at once; each answer (status, JSON) or the exception."""
    answers: list[tuple[int, dict] | BaseException] = [RuntimeError("no answer")] * len(paths)

    def get(index: int, path: str) -> None:
        try:
            answers[index] = run.get(path)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            answers[index] = exc

    threads = [threading.Thread(target=get, args=item) for item in enumerate(paths)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return answers


def in_background(run, paths: list[str]) -> threading.Thread:
    thread = threading.Thread(target=overlapping_gets, args=(run, paths))
    thread.start()
    return thread


def answers_within(port: int, seconds: float) -> bool:
    """Whether the app answers GET /healthz within `seconds`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=seconds):  # noqa: S310
            return True
    except OSError:  # refused, or timed out (TimeoutError)
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def processes(run) -> tuple[list[int], int]:
    """(worker pids, the metrics server's pid) among the master's children."""
    children = run.children()
    servers = [pid for pid in children if "serving.metrics_server" in cmdline(pid)]
    assert len(servers) == 1, [cmdline(pid) for pid in children]
    return [pid for pid in children if pid != servers[0]], servers[0]


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- the real thing: two workers per class ----------------------------------------------------

CLASSES = {
    # worker class: (extra environment, design concurrency, how to keep every worker busy)
    "sync": ({}, 2, "io"),
    # As many connections as threads (no keep-alive): a worker whose threads
    # are all busy accepts nothing more, so the other takes the next.
    "gthread": ({"GUNICORN_THREADS": "2", "GUNICORN_WORKER_CONNECTIONS": "2", "GUNICORN_KEEPALIVE": "0"}, 4, "io"),
    # A greenlet that never yields (pure-Python CPU) holds its whole worker.
    "gevent": ({}, 2000, "cpu"),
}


@pytest.mark.parametrize("worker_class", list(CLASSES))
def test_metrics_add_up_across_workers_and_survive_a_killed_one(gunicorn, tmp_path, worker_class):
    env, design_concurrency, busy_kind = CLASSES[worker_class]
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"a previous run's file")
    with gunicorn(TEST_APP, WORKER_CLASS=worker_class, WEB_CONCURRENCY="2", DEMO_MAX_WORK_MS="5000", **env) as run:
        assert not stale.exists()  # the master emptied the directory first
        first = scrape_until(run.metrics_port, lambda s: s.value("gunicorn_workers") == 2)
        assert first.value("gunicorn_worker_boots_total") == 2
        assert first.value("gunicorn_max_concurrent_requests") == design_concurrency
        workers, server = processes(run)
        assert len(workers) == 2

        # N requests spread over both workers (each answer names its worker).
        sent, seen = 0, set()
        for _ in range(20):
            answers = overlapping_gets(run, [f"/_test/items/{sent + i}?ms=20" for i in range(8)])
            assert all(isinstance(a, tuple) and a[0] == 200 for a in answers), answers
            sent += len(answers)
            seen |= {body["worker"] for _, body in answers}
            if len(seen) == 2:
                break
        assert len(seen) == 2, "every request went to one worker"
        for n in range(3):
            assert run.get(f"/no/such/page-{n}")[0] == 404
        # The liveness probe runs a GET through the app (a 404 here), never counted.
        for _ in range(3):
            assert run.get("/healthz")[0] == 200

        counted = scrape_until(run.metrics_port, lambda s: s.value("flask_http_requests_total", endpoint=ITEMS) == sent)
        assert counted.value("flask_http_requests_total", endpoint=ITEMS, method="GET", status="200") == sent
        assert counted.value("flask_http_request_duration_seconds_count", endpoint=ITEMS, method="GET") == sent
        assert counted.value("flask_http_request_duration_seconds_bucket", endpoint=ITEMS, le="0.001") == 0
        assert counted.value("flask_http_request_duration_seconds_bucket", endpoint=ITEMS, le="+Inf") == sent
        assert counted.value("flask_http_requests_total", endpoint="none", status="404") == 3
        assert counted.value("flask_http_requests_in_flight") == 0
        endpoints = {s.labels["endpoint"] for s in counted.samples if "endpoint" in s.labels}
        assert endpoints == {"/", ITEMS, "none"}  # templates only: never a raw path

        # Every worker busy: the app cannot take a request, the metrics port answers.
        if busy_kind == "io":
            # More than they can work on; the rest waits in their queues.
            busy = in_background(run, ["/work/io?ms=1000"] * design_concurrency * 2)
            capacity = design_concurrency
        else:
            # One at a time, so that each worker takes one (a busy one accepts nothing).
            busy = in_background(run, ["/work/cpu?ms=1000"])
            scrape_until(run.metrics_port, lambda s: s.value("flask_http_requests_in_flight") == 1)
            busy2 = in_background(run, ["/work/cpu?ms=1000"])
            capacity = 2
        saturated = scrape_until(run.metrics_port, lambda s: s.value("flask_http_requests_in_flight") == capacity)
        assert not answers_within(run.port, 0.3), "a worker was free"
        during = Scrape(run.metrics_port)
        assert during.value("flask_http_requests_in_flight") == capacity
        assert saturated.seconds < 1.0 and during.seconds < 1.0
        busy.join(timeout=15)
        if busy_kind == "cpu":
            busy2.join(timeout=15)
        scrape_until(run.metrics_port, lambda s: s.value("flask_http_requests_in_flight") == 0)

        # SIGKILL one worker: gunicorn boots another; the dead one's live
        # gauges go (child_exit), its counters are merged into the archive.
        killed = workers[0]
        # It served some of the requests: its counters have a file of their own.
        assert (metrics_dir / f"counter_{killed}.db").exists(), sorted(p.name for p in metrics_dir.iterdir())
        os.kill(killed, signal.SIGKILL)
        after = scrape_until(
            run.metrics_port,
            lambda s: (
                s.value("gunicorn_worker_boots_total") == 3
                and s.value("gunicorn_workers") == 2
                and not list(metrics_dir.glob("retired/*.db"))
            ),
        )
        assert after.value("flask_http_requests_total", endpoint=ITEMS) == sent
        assert after.value("gunicorn_max_concurrent_requests") == design_concurrency
        assert not list(metrics_dir.glob(f"*_{killed}.db"))
        assert (metrics_dir / "counter_archive.db").exists()
        replaced, same_server = processes(run)
        assert killed not in replaced and len(replaced) == 2 and same_server == server
    # gunicorn's on_exit stopped the metrics server with it.
    assert run.proc.returncode == 0
    assert not is_alive(server)
    assert not scrape_port_answers(run.metrics_port)


def scrape_port_answers(port: int) -> bool:
    try:
        Scrape(port, timeout=1.0)
    except OSError:
        return False
    return True


# --- off, orphaned, and the master's imports -----------------------------------------------------


def test_metrics_port_zero_turns_metrics_off(gunicorn, tmp_path):
    with gunicorn(WEB_CONCURRENCY="1", METRICS_PORT="0") as run:
        assert run.get("/work/io?ms=0")[0] == 200
        assert all("serving.metrics_server" not in cmdline(pid) for pid in run.children())
        assert not (tmp_path / "metrics").exists()
    assert "metrics server started" not in run.log.read_text()


def test_the_metrics_server_goes_when_the_master_is_killed(gunicorn):
    # GUNICORN_TIMEOUT=2: the worker, too, notices within a second or so.
    with gunicorn(WEB_CONCURRENCY="1", GUNICORN_TIMEOUT="2") as run:
        scrape_until(run.metrics_port, lambda s: s.value("gunicorn_workers") == 1)
        workers, server = processes(run)
        run.proc.send_signal(signal.SIGKILL)  # no on_exit: the server sees its parent gone
        run.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(is_alive(pid) for pid in [server, *workers]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not is_alive(server)
        assert not any(is_alive(pid) for pid in workers)


#: Loaded by every Python process of the run (PYTHONPATH): writes the names
#: of the modules the process had when it exited.
SITECUSTOMIZE = """
import atexit, json, os, sys

def _report():
    path = os.path.join(os.environ["MODULES_REPORT_DIR"], f"{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump(sorted(sys.modules), out)

atexit.register(_report)
"""


def test_the_master_never_imports_prometheus_client(gunicorn, tmp_path, helpers):
    """gevent's worker patches after the fork: whatever the master imported,
    the workers inherit unpatched. prometheus_client makes a lock at import;
    Flask and gevent itself must not be there either."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    reports = tmp_path / "modules"
    reports.mkdir()
    with gunicorn(
        WORKER_CLASS="gevent",
        WEB_CONCURRENCY="2",
        GUNICORN_ACCESS_LOG="true",
        PYTHONPATH=str(site),
        MODULES_REPORT_DIR=str(reports),
    ) as run:
        scrape_until(run.metrics_port, lambda s: s.value("gunicorn_workers") == 2)
        assert run.get("/work/io?ms=0")[0] == 200
        workers, server = processes(run)
        helpers.stop(run.proc)
    assert run.proc.returncode == 0
    master = set(json.loads((reports / f"{run.proc.pid}.json").read_text()))
    # gunicorn imports gevent itself, to load the worker class; the patching is the worker's.
    assert {"gunicorn.arbiter", "serving.gunicorn_conf", "pythonjsonlogger", "gunicorn.workers.ggevent"} <= master
    assert not {name for name in master if name.split(".")[0] in {"prometheus_client", "flask", "werkzeug"}}
    # The check sees what the others import: the workers and the server do import it.
    for pid in [*workers, server]:
        assert "prometheus_client" in json.loads((reports / f"{pid}.json").read_text()), pid
    assert "gevent" in json.loads((reports / f"{workers[0]}.json").read_text())


# --- the master's copy of mark_process_dead ------------------------------------------------------

WRITE_EVERY_KIND = """
import os
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import Gauge as G
Counter("c", "c").inc()
Histogram("h", "h").observe(1)
for mode in sorted(G._MULTIPROC_MODES):
    Gauge("g_" + mode, "g", multiprocess_mode=mode).set(1)
print(os.getpid())
"""


def test_the_masters_mark_process_dead_is_prometheus_clients(tmp_path, helpers, env_factory):
    from prometheus_client import multiprocess

    assert set(metrics_master.LIVE_GAUGE_MODES) == multiprocess._LIVE_GAUGE_MULTIPROCESS_MODES
    written = tmp_path / "written"
    written.mkdir()
    result = helpers.run_python(["-c", WRITE_EVERY_KIND], env_factory(PROMETHEUS_MULTIPROC_DIR=str(written)))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout)
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    shutil.copytree(written, theirs)
    shutil.copytree(written, ours)
    multiprocess.mark_process_dead(pid, str(theirs))
    metrics_master.mark_process_dead(pid, str(ours))
    left = sorted(p.name for p in ours.iterdir())
    assert left == sorted(p.name for p in theirs.iterdir())
    assert f"counter_{pid}.db" in left and f"gauge_livesum_{pid}.db" not in left
    assert len(left) < len(list(written.iterdir()))


def test_reset_directory_creates_or_empties(tmp_path):
    target = tmp_path / "a" / "b"
    metrics_master.reset_directory(str(target))
    assert target.is_dir()
    (target / "counter_1.db").write_bytes(b"x")
    (target / "keep.txt").write_text("not ours")
    (target / "retired" / "counter_2.db").write_bytes(b"x")
    metrics_master.reset_directory(str(target))
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt", "retired"]
    assert not list((target / "retired").iterdir())


# --- recycled workers: an archive, not a file each -------------------------------------------------


def metrics_files(metrics_dir: Path) -> list[Path]:
    return sorted([*metrics_dir.glob("*.db"), *metrics_dir.glob("retired/*.db")])


def test_recycled_workers_keep_every_count_in_an_archive_and_the_directory_small(gunicorn):
    """2 sync workers recycled every 5 requests, 300 requests (about 60
    recycles), scraped all along: the counter ends exactly at 300, never
    goes down on the way, and the directory holds the live workers' files
    and the archives, not two files per recycle."""
    with gunicorn(TEST_APP, WORKER_CLASS="sync", WEB_CONCURRENCY="2", GUNICORN_MAX_REQUESTS="5") as run:
        scrape_until(run.metrics_port, lambda s: s.value("gunicorn_workers") == 2)  # the metrics server is up
        seen: list[float] = []
        largest = 0
        done = threading.Event()

        def scrape_along() -> None:
            nonlocal largest
            while not done.is_set():
                value = Scrape(run.metrics_port).value("flask_http_requests_total", endpoint=ITEMS)
                seen.append(value or 0.0)
                largest = max(largest, len(metrics_files(run.metrics_dir)))
                time.sleep(0.02)

        scraper = threading.Thread(target=scrape_along)
        scraper.start()
        try:
            for n in range(300):
                assert run.get(f"/_test/items/{n}")[0] == 200
        finally:
            done.set()
            scraper.join(timeout=10)
        final = scrape_until(
            run.metrics_port,
            lambda s: (
                s.value("flask_http_requests_total", endpoint=ITEMS) == 300
                and not list(run.metrics_dir.glob("retired/*.db"))
            ),
        )
        boots = final.value("gunicorn_worker_boots_total")
        after = metrics_files(run.metrics_dir)
    assert boots >= 2 + 300 // 5 - 2, f"only {boots} boots: the workers were not recycled"
    assert final.value("flask_http_request_duration_seconds_count", endpoint=ITEMS) == 300
    assert len(seen) > 5, "the scraper hardly ran"
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), "the counter went down between scrapes"
    # Per live worker: counter, histogram and the two live gauges' files; two archives.
    bound = 2 * 4 + 2
    assert len(after) <= bound, [p.name for p in after]
    # While recycling, a few retired files wait for their merge at most.
    assert largest <= bound + 4, largest
    assert {p.name for p in after} >= {"counter_archive.db", "histogram_archive.db"}


def test_merging_retired_files_adds_them_key_by_key(tmp_path):
    """Two retired counter files and an archive become one archive whose
    every value is their sum; the retired files are gone."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from serving.metrics_server import merge_retired

    metrics_master.reset_directory(str(tmp_path))
    key_a = mmap_key("requests", "requests_total", ["status"], ["200"], "help")
    key_b = mmap_key("requests", "requests_total", ["status"], ["500"], "help")
    for name, values in (
        ("counter_archive.db", {key_a: 10.0}),
        ("retired/counter_101.db", {key_a: 2.0, key_b: 1.0}),
        ("retired/counter_102.db", {key_a: 3.0}),
    ):
        written = MmapedDict(str(tmp_path / name))
        for key, value in values.items():
            written.write_value(key, value, 0.0)
        written.close()
    assert merge_retired(str(tmp_path)) == 2
    merged = {k: v for k, v, _, _ in MmapedDict.read_all_values_from_file(str(tmp_path / "counter_archive.db"))}
    assert merged == {key_a: 15.0, key_b: 1.0}
    assert not list((tmp_path / "retired").iterdir())
    assert merge_retired(str(tmp_path)) == 0
