"""Observability against the running stack with its monitoring profile
(`make monitor`): one request traced by its id through nginx, gunicorn and
the app; Prometheus scraping every replica and nginx's exporter, with the
counts the requests sent; rules loaded; the new containers hardened
(docs/observability.md). The stack also mounts the demo's two other apps
(APP_MOUNTS, docs/concurrency.md): each is reached, traced and counted under
its own label, as the app is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.stack import REPO, Stack, free_port
from tests.replica_metrics import metrics_files, scrape_seconds

pytestmark = pytest.mark.integration

ALERTS = {"AppHigh5xxRatio", "AppHighP95Latency", "GunicornWorkerRestarts", "GunicornSaturated", "ScrapeTargetDown"}


#: The demo's mounted apps: a second Flask app and a plain WSGI callable.
MOUNTS = "/admin=demo.admin:application,/plain=demo.plain_wsgi:application"


@pytest.fixture(scope="module")
def monitored(built_images):
    stack = Stack(
        "monitor",
        profiles=("monitoring",),
        PROMETHEUS_PORT=str(free_port()),
        GUNICORN_ACCESS_LOG="true",
        APP_MOUNTS=MOUNTS,
    )
    stack.prometheus = f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}"
    try:
        stack.build()
        yield stack.up()
    finally:
        stack.down()


def query(stack: Stack, promql: str) -> list[dict]:
    answer = requests.get(f"{stack.prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def value(stack: Stack, promql: str) -> float | None:
    result = query(stack, promql)
    return float(result[0]["value"][1]) if result else None


def eventually(check, timeout: float = 45, interval: float = 1):
    """check() until it returns something truthy; its last answer otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(interval)


def active_targets(stack: Stack) -> dict[str, list[dict]]:
    data = requests.get(f"{stack.prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    jobs: dict[str, list[dict]] = {}
    for target in data:
        jobs.setdefault(target["labels"]["job"], []).append(target)
    return jobs


def all_up(stack: Stack, app_replicas: int) -> bool:
    jobs = active_targets(stack)
    app = [t for t in jobs.get("app", []) if t["health"] == "up"]
    nginx = [t for t in jobs.get("nginx", []) if t["health"] == "up"]
    return len(app) == app_replicas == len(jobs.get("app", [])) and len(nginx) == 1


# --- the request id ---------------------------------------------------------------


def test_a_well_formed_request_id_is_kept_from_nginx_to_the_app_logs(monitored):
    request_id = f"trace-{time.time_ns()}"
    response = monitored.get("/work/io?ms=1", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id
    error = monitored.get("/no-such-page", headers={"X-Request-ID": request_id + "-e"})
    assert error.status_code == 404
    assert error.json()["error"]["request_id"] == request_id + "-e"
    assert error.headers["X-Request-ID"] == request_id + "-e"

    def lines_with_the_id():
        nginx = [json.loads(line) for line in monitored.logs("nginx").splitlines() if request_id in line]
        app = [json.loads(line) for line in monitored.logs("app").splitlines() if request_id in line]
        return (nginx, app) if nginx and app else None

    # nginx flushes its buffered access log every second.
    found = eventually(lines_with_the_id, timeout=10)
    assert found, "the id reached neither log"
    nginx, app = found
    for line in nginx + app:
        assert line["request_id"].startswith(request_id)
        assert {"time", "level", "request_id"} <= set(line)
    ok = [line for line in nginx if line["request_id"] == request_id]
    assert ok and ok[0]["path"] == "/work/io" and ok[0]["status"] == 200 and ok[0]["method"] == "GET"
    access = [line for line in app if line.get("path") == "/work/io"]
    assert access and access[0]["status"] == 200
    # gunicorn's time for it (s): some, and less than the client waited for it through nginx.
    assert 0 < access[0]["duration"] < response.elapsed.total_seconds(), (access[0], response.elapsed)


@pytest.mark.parametrize("sent", ["short", "has space!", "x" * 200, "<script>", ""])
def test_a_malformed_or_missing_request_id_is_replaced(monitored, sent):
    response = monitored.get("/no-such-page", headers={"X-Request-ID": sent} if sent else {})
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
    assert response.json()["error"]["request_id"] == generated


def test_nginx_own_errors_carry_the_request_id(monitored):
    response = monitored.get("/", headers={"Host": "not-served.example", "X-Request-ID": "abcdefgh-1234"})
    assert response.status_code == 421
    assert response.headers["X-Request-ID"] == "abcdefgh-1234"
    assert response.json()["error"] == {
        "status": 421,
        "name": "Misdirected Request",
        "message": "This server does not serve the requested host.",
        "source": "nginx",
        "request_id": "abcdefgh-1234",
    }


# --- Prometheus ---------------------------------------------------------------------


def test_prometheus_scrapes_every_replica_and_nginx(monitored):
    assert eventually(lambda: all_up(monitored, 2)), active_targets(monitored)


def test_the_counts_are_the_requests_sent_across_replicas_and_workers(monitored):
    config = monitored.effective_config()
    # Earlier tests' requests reach Prometheus with the next scrape (every 5 s).
    time.sleep(6)
    before = value(monitored, 'sum(flask_http_requests_total{endpoint="/work/io",status="200"})') or 0
    for _ in range(60):
        assert monitored.get("/work/io?ms=1").status_code == 200
    target = before + 60
    got = eventually(
        lambda: value(monitored, 'sum(flask_http_requests_total{endpoint="/work/io",status="200"})') == target
    )
    assert got, value(monitored, 'sum(flask_http_requests_total{endpoint="/work/io",status="200"})')
    # Both replicas served some: nginx balances, and the counts add up across them.
    per_replica = query(monitored, 'sum by (instance) (flask_http_requests_total{endpoint="/work/io"})')
    assert len(per_replica) == 2 and all(float(r["value"][1]) > 0 for r in per_replica), per_replica
    # Raw paths never become labels.
    assert not query(monitored, 'flask_http_requests_total{endpoint=~".*ms=.*"}')
    assert value(monitored, "sum(gunicorn_workers)") == 2 * config["workers"]
    assert value(monitored, "sum(gunicorn_max_concurrent_requests)") == 2 * config["max_concurrent_requests"]
    assert value(monitored, 'sum(flask_http_request_duration_seconds_count{endpoint="/work/io"})') >= 60


def test_nginx_metrics_come_through_the_exporter(monitored):
    assert eventually(lambda: value(monitored, "nginx_up") == 1)
    assert value(monitored, "nginx_http_requests_total") > 0
    assert value(monitored, "nginx_connections_accepted") > 0


def test_rules_and_alerts_are_loaded_and_healthy(monitored):
    groups = requests.get(f"{monitored.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules if rule["type"] == "alerting"} == ALERTS

    def every_rule_healthy():
        groups = requests.get(f"{monitored.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules and all(rule.get("health") == "ok" for rule in rules)

    assert eventually(every_rule_healthy), requests.get(f"{monitored.prometheus}/api/v1/rules", timeout=10).json()


def test_targets_follow_replicas_as_they_come_and_go(monitored):
    environment = {**os.environ, **monitored.cli_environment(), "APP_REPLICAS": "3"}
    deployed = subprocess.run(
        ["make", "--no-print-directory", "deploy"], cwd=REPO, env=environment, capture_output=True, text=True
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert eventually(lambda: all_up(monitored, 3)), active_targets(monitored)
    environment["APP_REPLICAS"] = "2"
    deployed = subprocess.run(
        ["make", "--no-print-directory", "deploy"], cwd=REPO, env=environment, capture_output=True, text=True
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert eventually(lambda: all_up(monitored, 2)), active_targets(monitored)


#: Each worker recycled after 20 requests: 1,000 requests over 2 replicas of 5
#: workers are about 50 recycles, each replica's archives merged many times
#: over (a worker's boot is most of the test's time: more add nothing).
RECYCLE_AFTER, RECYCLED_REQUESTS = 20, 1000


def test_prometheus_counts_every_request_exactly_while_workers_recycle(monitored):
    """Deployed with GUNICORN_MAX_REQUESTS=20, 1,000 requests recycle each
    worker about 5 times: Prometheus's counter rises by exactly 1,000, each
    replica's metrics directory holds its live workers' files and two
    archives, and a scrape stays quick."""
    environment = {**os.environ, **monitored.cli_environment(), "GUNICORN_MAX_REQUESTS": str(RECYCLE_AFTER)}
    deployed = subprocess.run(
        ["make", "--no-print-directory", "deploy"], cwd=REPO, env=environment, capture_output=True, text=True
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    config = monitored.effective_config()
    assert config["max_requests"] == RECYCLE_AFTER
    assert eventually(lambda: all_up(monitored, 2)), active_targets(monitored)
    time.sleep(6)  # a scrape after the old replicas' targets went: their series are stale
    counted = 'sum(flask_http_requests_total{endpoint="/work/io",status="200"})'
    before = value(monitored, counted) or 0

    def one(_: int) -> int:
        return requests.get(f"{monitored.url}/work/io?ms=0", timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(RECYCLED_REQUESTS)))
    assert statuses.count(200) == RECYCLED_REQUESTS, {s: statuses.count(s) for s in set(statuses)}
    assert eventually(lambda: value(monitored, counted) == before + RECYCLED_REQUESTS), (
        value(monitored, counted),
        before + RECYCLED_REQUESTS,
    )
    boots = value(monitored, "sum(gunicorn_worker_boots_total)")
    assert boots >= 2 * config["workers"] + RECYCLED_REQUESTS // RECYCLE_AFTER // 2, boots
    for container in monitored.containers("app"):
        # Per live worker: counter, histogram and the two live gauges' files;
        # two archives; a few retired files may wait for their merge.
        files = metrics_files(container.id)
        assert files <= config["workers"] * 4 + 2 + 4, (container.name, files)
        assert scrape_seconds(container.id) < 1.0
    print(f"\n{RECYCLED_REQUESTS} requests, {boots:.0f} worker boots in all: Prometheus counted exactly")


# --- application dispatching: the mounted apps ----------------------------------------


def test_each_mounted_app_answers_under_its_prefix_and_builds_prefixed_urls(monitored):
    assert monitored.get("/").json()["service"] == "flask-concurrency"
    admin = monitored.get("/admin/")
    assert admin.status_code == 200 and admin.json()["app"] == "admin", admin.text
    assert admin.json()["script_root"] == "/admin"
    # url_for's links carry the prefix, and nginx routes them back to the same app.
    assert admin.json()["links"] == {"self": "/admin/", "worker": "/admin/worker"}
    assert monitored.get(admin.json()["links"]["worker"]).json()["app"] == "admin"
    plain = monitored.get("/plain/")
    assert plain.status_code == 200
    assert (plain.json()["app"], plain.json()["script_name"]) == ("plain", "/plain")


@pytest.mark.parametrize(("path", "status"), [("/admin/missing", 404), ("/plain/missing", 404), ("/plain/fail", 500)])
def test_errors_from_each_mounted_app_are_json_naming_the_request_id(monitored, path, status):
    request_id = f"mounted-{time.time_ns()}"
    response = monitored.get(path, headers={"X-Request-ID": request_id})
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["request_id"] == response.headers["X-Request-ID"] == request_id
    assert "<html" not in response.text.lower() and "Traceback" not in response.text


def test_prometheus_counts_each_mounted_apps_requests_under_its_label(monitored):
    # app label -> (path, its endpoint label, requests): the root app's `/`
    # only, which no health check polls. A plain WSGI app has no URL rules:
    # its requests are one endpoint, `*`.
    sent = {"/": ("/", "/", 6), "/admin": ("/admin/", "/", 4), "/plain": ("/plain/", "*", 5)}

    def counted(label: str) -> float:
        endpoint = sent[label][1]
        promql = f'sum(flask_http_requests_total{{app="{label}",endpoint="{endpoint}",status="200"}})'
        return value(monitored, promql) or 0

    # Earlier tests' requests reach Prometheus with the next scrape (every 5 s).
    time.sleep(6)
    before = {label: counted(label) for label in sent}
    for path, _, count in sent.values():
        for _ in range(count):
            assert monitored.get(path).status_code == 200
    target = {label: before[label] + count for label, (_, _, count) in sent.items()}
    assert eventually(lambda: {label: counted(label) for label in sent} == target), (
        {label: counted(label) for label in sent},
        target,
    )
    assert {r["metric"]["endpoint"] for r in query(monitored, 'flask_http_requests_total{app="/plain"}')} == {"*"}


# --- where metrics are and are not -----------------------------------------------------


def test_metrics_are_not_public(monitored):
    # Through nginx, /metrics is just a path the app does not have.
    response = monitored.get("/metrics")
    assert response.status_code == 404 and response.json()["error"]["name"] == "Not Found"
    for service in ("app", "nginx-exporter"):
        containers = monitored.containers(service)
        assert containers, f"no {service} container to check"
        for container in containers:
            assert not any((container.network_settings.ports or {}).values()), container.name
    (prometheus,) = monitored.containers("prometheus")
    bindings = [b for bs in prometheus.network_settings.ports.values() if bs for b in bs]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)


@pytest.mark.parametrize("service", ["prometheus", "nginx-exporter"])
def test_monitoring_containers_are_hardened(monitored, service):
    (container,) = monitored.containers(service)
    assert container.config.user not in ("", "0", "root", "0:0")
    processes = monitored.processes(service)
    assert processes and all(p["uid"] != "0" for p in processes), processes
    assert container.host_config.readonly_rootfs is True
    assert container.host_config.cap_drop == ["ALL"]
    assert "no-new-privileges:true" in container.host_config.security_opt
    assert container.host_config.memory > 0 and container.host_config.pids_limit > 0
    if service == "prometheus":
        mounts = {m.destination: m for m in container.mounts}
        assert mounts["/prometheus"].type == "volume", "the data lives in a named volume"
