"""Claims the docs make about the configuration, read from the files that
make them true."""

from __future__ import annotations

import importlib
import json
import re
import shutil

import pytest

from harness.stack import REPO
from serving.jsonlog import FIELDS
from serving.settings import VARIABLES

pytestmark = pytest.mark.unit

#: How the docs write small counts.
WORDS = ("zero", "one", "two", "three", "four", "five")


def nginx_access_log_fields() -> list[str]:
    """The JSON keys of nginx's `json_upstream` log_format, wherever in nginx/ it is."""
    for path in sorted((REPO / "nginx").rglob("*")):
        if path.is_file() and "log_format json_upstream" in (text := path.read_text(errors="replace")):
            block = text.split("log_format json_upstream", 1)[1].split(";", 1)[0]
            return re.findall(r'"(\w+)":', block)
    raise AssertionError("no log_format json_upstream in nginx/")


def test_nginx_access_log_shares_every_field_but_message_with_gunicorns_lines():
    fields = nginx_access_log_fields()
    assert set(FIELDS) - set(fields) == {"message"}
    assert {"method", "path", "status", "duration"} <= set(fields)
    observability = (REPO / "docs" / "observability.md").read_text()
    assert "it has no `message`" in observability


def test_the_labs_statement_of_what_werkzeugs_dev_server_builds_on_holds_for_the_pinned_werkzeug():
    # docs/benchmarks/README.md ("The development server, as the seeds
    # describe it"): not wsgiref, but http.server and socketserver, and every
    # answer closes its connection, HTTP/1.1 or not.
    import http.server
    import socket
    import socketserver
    import threading
    import wsgiref.simple_server
    from importlib.metadata import version

    from werkzeug import serving

    pinned = re.search(r"^werkzeug==([\d.]+)", (REPO / "requirements" / "app.txt").read_text(), re.MULTILINE)
    assert pinned and version("werkzeug") == pinned.group(1)
    docs = (REPO / "docs" / "benchmarks" / "README.md").read_text()
    assert f"Werkzeug {pinned.group(1)}'s `werkzeug/serving.py`" in docs

    assert issubclass(serving.BaseWSGIServer, http.server.HTTPServer)
    assert issubclass(serving.WSGIRequestHandler, http.server.BaseHTTPRequestHandler)
    assert serving.ThreadedWSGIServer.__bases__ == (socketserver.ThreadingMixIn, serving.BaseWSGIServer)
    assert serving.ForkingWSGIServer.__bases__ == (socketserver.ForkingMixIn, serving.BaseWSGIServer)
    # Nothing of wsgiref's server in the chain.
    for cls in (serving.BaseWSGIServer, serving.WSGIRequestHandler):
        assert not any(base.__module__.startswith("wsgiref") for base in cls.__mro__), cls
    assert not issubclass(serving.BaseWSGIServer, wsgiref.simple_server.WSGIServer)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    # As the lab runs them: threaded=False answers HTTP/1.0, threaded=True
    # HTTP/1.1; both say Connection: close and close.
    for threaded, protocol in ((False, "HTTP/1.0"), (True, "HTTP/1.1")):
        server = serving.make_server("127.0.0.1", 0, app, threaded=threaded)
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := client.recv(65536):
                    answer += chunk  # the server closing the connection ends this loop
            head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
            assert head.startswith(f"{protocol} 200".lower()), head
            assert "connection: close" in head, head
        finally:
            thread.join(5)
            server.server_close()


# --- the lab's published figures (docs/benchmarks/) --------------------------

BENCHMARKS = REPO / "docs" / "benchmarks"


def published_results() -> dict:
    return json.loads((BENCHMARKS / "results.json").read_text())


def test_the_benchmark_tables_are_what_the_labs_report_writes_from_results_json(tmp_path):
    # `make bench` writes them with bench/report.py; a hand edit, or a
    # results.json changed without them, fails here.
    from bench import report

    shutil.copy(BENCHMARKS / "README.md", tmp_path / "README.md")
    report.write(published_results(), tmp_path)
    for name in ("results.md", "README.md", "runs.csv", "summary.csv", "results.json"):
        assert (tmp_path / name).read_text() == (BENCHMARKS / name).read_text(), name


def test_the_labs_duration_in_the_makefile_and_docs_is_the_recorded_runs():
    minutes = round(published_results()["meta"]["elapsed_s"] / 60)
    makefile = (REPO / "Makefile").read_text()
    assert re.findall(r"The full mode \(about (\d+) minutes", makefile) == [str(minutes)]
    readme = (BENCHMARKS / "README.md").read_text()
    assert re.findall(r"make bench +# full mode, about (\d+) minutes", readme) == [str(minutes)]


def test_every_figure_the_benchmark_pages_prose_cites_is_in_the_tables_the_lab_wrote():
    """The prose of docs/benchmarks/README.md ("What this means...", the
    hand-written reading of the run) cites the run's figures: each, with
    three digits or more or a decimal point, is found in results.md or the
    page's generated sections, which bench/report.py writes from
    results.json (checked above). After the lab runs again, the prose that
    cites the run before fails here until it is read again. The one figure
    that is configuration, gevent's greenlets per worker, is serving's."""
    from serving.settings import load

    page = (BENCHMARKS / "README.md").read_text()
    start = page.index("## What this means for choosing a worker class")
    end = page.index("\n## ", start + 1)
    prose, generated = page[start:end], page[end:] + (BENCHMARKS / "results.md").read_text()
    greenlets = f"{load({'WORKER_CLASS': 'gevent'}, cpus=2).as_dict()['worker_connections']:,}"
    cited = {n for n in re.findall(r"\d[\d,]*(?:\.\d+)?", prose) if len(n.replace(",", "")) >= 3 or "." in n}
    assert len(cited) > 50, sorted(cited)
    assert sorted(n for n in cited if n not in generated and n != greenlets) == []


def test_the_benchmark_pages_machine_is_the_one_results_json_records():
    machine = published_results()["meta"]["machine"]
    prose = (BENCHMARKS / "README.md").read_text().split("## What this means", 1)[0]
    prose = " ".join(prose.split())
    os_version = re.search(r"Debian GNU/Linux (\d+)", machine["os"])
    assert os_version, machine["os"]
    assert f"{machine['cpus']} virtual cores" in prose
    assert f"{round(machine['memory_gib'])} GiB, Debian {os_version[1]} with" in prose
    engine = re.match(r"[\d.]+", machine["docker_engine"])[0]
    compose = ".".join(machine["compose"].split("-")[0].split(".")[:3])
    assert f"Docker engine {engine} and Compose {compose}" in prose


# --- docs/security.md ----------------------------------------------------------

SECURITY_TEXT = (REPO / "docs" / "security.md").read_text()
#: Its words, whatever the line breaks.
SECURITY = " ".join(SECURITY_TEXT.split())


def test_security_mds_fuzzer_is_test_edges(monkeypatch):
    # The section states the fuzzer's settings; the statuses it sees are a
    # run's record, printed by the test, and not typed into the page.
    monkeypatch.delenv("FUZZ_CASES", raising=False)
    edge = importlib.reload(importlib.import_module("tests.integration.test_edge"))
    fuzzer = SECURITY.split("## The fuzzer", 1)[1]
    assert f"a catalogue of {len(edge.CATALOGUE)} named hostile requests" in fuzzer
    pipelined = edge.CATALOGUE["pipelined-50"].count(b"GET ")
    assert f"{pipelined} pipelined requests" in fuzzer
    assert f"every answer within {edge.ANSWER_WITHIN_S:.0f} s" in fuzzer
    assert f"`make test` sends {edge.FUZZ_CASES:,} mutations per class" in fuzzer
    assert f'(`make test PYTEST_ARGS="-m full"`) {edge.FULL_FUZZ_CASES:,};' in fuzzer


def test_security_mds_forging_client_test_is_the_one_it_names():
    proxies = importlib.import_module("tests.integration.test_trusted_proxies")
    assert (proxies.RATE, proxies.BURST, proxies.AT_ONCE) == ("5r/s", "5", 30)
    assert "tested with 5 r/s and a burst of 5, 30 requests at once from one client" in SECURITY
    assert callable(proxies.test_a_client_reaching_nginx_directly_cannot_choose_its_address)


def compose_defaults() -> dict[str, str]:
    compose = (REPO / "docker-compose.yml").read_text()
    return dict(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}", compose))


def test_security_mds_limits_are_docker_composes_defaults():
    defaults = compose_defaults()
    rows = re.findall(r"^\| (`[A-Z][A-Z0-9_]*`(?: / `[A-Z][A-Z0-9_]*`)?) \| ([^|]+) \|", SECURITY_TEXT, re.MULTILINE)
    checked = set()
    for names, values in rows:
        for name, value in zip(re.findall(r"[A-Z][A-Z0-9_]*", names), values.split(" / "), strict=True):
            # `none`: Compose's 0, no limit.
            assert defaults[name] == ("0" if value.strip() == "none" else value.strip().strip("`")), name
            checked.add(name)
    assert {"NGINX_RATE_LIMIT", "APP_MEMORY", "NGINX_PIDS", "APP_CPUS"} <= checked


# --- docs/operations.md ----------------------------------------------------------

OPERATIONS = " ".join((REPO / "docs" / "operations.md").read_text().split())


def test_operations_mds_load_and_bounds_are_the_operations_tests():
    from harness.load import CLIENTS

    operations = importlib.import_module("tests.integration.test_operations")
    assert (
        f"keeps {CLIENTS} clients requesting `GET {operations.PATH}` through nginx, "
        f"from {operations.SETTLE_SECONDS} s before the event to {operations.SETTLE_SECONDS} s after it"
    ) in OPERATIONS
    back = f"be healthy and served again within {operations.BACK_WITHIN_S} s"
    assert back in OPERATIONS
    assert f"be healthy again within {operations.BACK_WITHIN_S} s" in OPERATIONS


def test_operations_mds_soak_is_test_soaks(monkeypatch):
    for name in ("SOAK_SECONDS", "SOAK_USERS", "SOAK_WORKER_CLASS", "SOAK_SEGMENT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    soak = importlib.reload(importlib.import_module("tests.integration.test_soak"))
    assert f"## The soak: {soak.SECONDS // 60} minutes" in OPERATIONS
    assert f"two {soak.WORKER_CLASS} replicas" in OPERATIONS
    assert f"recycled after {soak.MAX_REQUESTS:,} ± {soak.JITTER} requests" in OPERATIONS
    assert f"every {soak.EVERY} s reads" in OPERATIONS
    assert f"runs of {soak.SEGMENT_SECONDS // 60} minutes at most" in OPERATIONS
    runs = -(-soak.SECONDS // soak.SEGMENT_SECONDS)
    assert f"the soak is {WORDS[runs]} back to back" in OPERATIONS
    growth = round((soak.RSS_GROWTH - 1) * 100)
    assert f"past {growth} % + {soak.RSS_SLACK_KB // 1024} MB of the largest" in OPERATIONS


def test_operations_mds_nginx_and_drain_timings_are_the_configs():
    nginx = "\n".join(p.read_text() for p in sorted((REPO / "nginx").rglob("*")) if p.is_file())
    assert "proxy_connect_timeout 1s;" in nginx and "`proxy_connect_timeout` is 1 s" in OPERATIONS
    assert "max_fails=1 fail_timeout=10s" in nginx and "(`max_fails=1 fail_timeout=10s`" in OPERATIONS
    assert (
        "proxy_next_upstream_timeout 10s;" in nginx and "bounded to 10 s (`proxy_next_upstream_timeout`)" in OPERATIONS
    )
    assert " valid=2s " in nginx and "re-read every 2 s" in OPERATIONS

    graceful = next(v for v in VARIABLES if v.name == "GUNICORN_GRACEFUL_TIMEOUT")
    assert f"`GUNICORN_GRACEFUL_TIMEOUT` ({graceful.default} s)" in OPERATIONS
    compose = (REPO / "docker-compose.yml").read_text()
    grace = re.search(r"&app-stop-grace-period (\d+)s", compose)[1]
    assert f"`stop_grace_period` ({grace} s)" in OPERATIONS


# --- docs/observability.md --------------------------------------------------------

OBSERVABILITY = " ".join((REPO / "docs" / "observability.md").read_text().split())


def test_observability_mds_scrape_cost_bounds_are_the_tests():
    cost = importlib.import_module("tests.integration.test_scrape_cost")
    assert f"{cost.CLIENTS} clients, {WORDS[cost.ROUNDS]} {cost.SECONDS} s rounds each way" in OBSERVABILITY
    assert f"up to {cost.SCRAPES_PER_SECOND} times a second" in OBSERVABILITY
    assert f"at least {WORDS[int(cost.MIN_SCRAPES_PER_REPLICA_SECOND)]} scrape per replica per second" in OBSERVABILITY
    assert f"scraped throughput at least {cost.MIN_THROUGHPUT_RATIO} of unscraped" in OBSERVABILITY
    assert f"a median scrape under {cost.MAX_MEDIAN_SCRAPE_S} s" in OBSERVABILITY
    assert f"none over Prometheus's {cost.MAX_SCRAPE_S:.0f} s timeout" in OBSERVABILITY
    prometheus = (REPO / "monitoring" / "prometheus" / "prometheus.yml").read_text()
    interval = re.search(r"scrape_interval: (\d+)s", prometheus)[1]
    assert f"(Prometheus scrapes every {interval} s)" in OBSERVABILITY


def test_observability_mds_recycling_check_is_the_tests():
    observability = importlib.import_module("tests.integration.test_observability")
    recycles = observability.RECYCLED_REQUESTS // observability.RECYCLE_AFTER
    assert (
        f"`GUNICORN_MAX_REQUESTS={observability.RECYCLE_AFTER}`, {observability.RECYCLED_REQUESTS:,} requests "
        f"recycle the workers about {recycles} times and Prometheus's counter rises by exactly "
        f"{observability.RECYCLED_REQUESTS:,}"
    ) in OBSERVABILITY


# --- docs/scaling.md, the Swarm part -------------------------------------------------

SWARM = " ".join((REPO / "docs" / "scaling.md").read_text().split("## Kubernetes", 1)[0].split())


def test_scaling_mds_swarm_timings_are_the_overlays_and_the_tests():
    overlay = (REPO / "deploy" / "swarm" / "compose.swarm.yml").read_text()
    drain = re.search(r"\$\$\{DRAIN_SECONDS:-(\d+)\}", overlay)[1]
    assert f"serving for `DRAIN_SECONDS` ({drain})" in SWARM
    (monitor,) = set(re.findall(r"monitor: (\d+)s", overlay))
    assert f"watched for {monitor} s" in SWARM
    swarm = importlib.import_module("tests.integration.test_swarm")
    assert f"Each event must end within {swarm.EVENT_WITHIN_S} s" in SWARM


def test_concurrency_mds_suite_table_is_what_test_concurrency_asserts():
    """docs/concurrency.md's "Asserted by the test suite" table: each row's
    burst, degree, per-worker figure and rounds are test_concurrency.py's,
    and its "effective config says" is what serving/settings.py computes
    for the row's settings."""
    from serving.settings import load
    from tests.integration import test_concurrency as suite

    text = (REPO / "docs" / "concurrency.md").read_text().split("### Asserted by the test suite", 1)[1]
    table = text.split("| configuration | K |", 1)[1].split("\n\n", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]

    expected = []
    for settings, per_worker in suite.CONFIGURATIONS.values():
        workers = int(settings["WEB_CONCURRENCY"])
        config = load(settings, cpus=2).as_dict()["max_concurrent_requests"]
        assert config == workers * per_worker
        per_worker_cells = ", ".join([str(per_worker)] * workers)
        # test_io_concurrency_degree_is_what_the_effective_config_says: twice the design, two rounds.
        expected.append([str(2 * config), str(config), per_worker_cells, str(config), "2"])
    source = (REPO / "tests" / "integration" / "test_concurrency.py").read_text()
    single = source.split("def test_gevent_serves_hundreds_of_io_requests_per_worker", 1)[1].split("\ndef ", 1)[0]
    (burst,) = re.findall(r"fire\(f\"\{stack\.url\}/work/io\?ms=\{ms\}\", (\d+)\)", single)
    assert f"max_overlap([r.interval for r in results]) == {burst}" in single and "rounds(results) == 1" in single
    config = load(suite.SINGLE_GEVENT, cpus=2).as_dict()["max_concurrent_requests"]
    expected.append([burst, burst, burst, str(config), "1"])
    assert [row[1:] for row in rows] == expected


def test_concurrency_mds_burst_table_is_what_bench_burst_printed_for_its_committed_run():
    """docs/concurrency.md's table of the gevent worker's accept designs is
    bench.burst's table of the run committed in docs/benchmarks/burst.json,
    and the section's prose cites no figure of a run that is not there."""
    from bench import burst

    run = json.loads((BENCHMARKS / "burst.json").read_text())
    doc = (REPO / "docs" / "concurrency.md").read_text()
    assert burst.table(run["rows"]) in doc
    start = doc.index("`python -m bench.burst` measures")
    end = min(doc.index(heading, start) for heading in ("\n## ", "\n### "))
    section = doc[start:end].replace(burst.table(run["rows"]), "")
    # An address and a status are not figures.
    section = section.replace("127.0.0.1", "").replace("503", "")
    cited = {n for n in re.findall(r"\d[\d,]*(?:\.\d+)?", section) if len(n.replace(",", "")) >= 3 or "." in n}
    assert sorted(cited) == [], "figures typed into the prose, not from the table"
