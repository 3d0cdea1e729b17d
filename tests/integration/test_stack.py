"""The running stack, as a user reaches it: through nginx only, served by
gunicorn, never by Werkzeug's development server.

The contract tests (`contract_stack`) run twice: against the reference stack,
and against a fork made as the README's fork guide says (a package of its
own beside the demo's, named by APP_MODULE, with no error handler, health
route or server code of its own). They assert nothing about the
demonstration endpoints, so a fork keeps them green.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import time

import pytest
import requests

from harness.stack import REPO, Stack, app_build_context, project_containers
from tests.nginx_walk import BASE_IMAGE_FILES, loaded_files, walk

pytestmark = pytest.mark.integration

#: The fork guide's steps: a package of the team's own, in the common layout
#: (a factory in its __init__.py), knowing nothing of the server.
FORK_PACKAGE = "forkapp"
FORK_APP_MODULE = f"{FORK_PACKAGE}:create_app()"
FORK_INIT = """
from flask import Flask, jsonify


def create_app():
    app = Flask(__name__)

    @app.get("/")
    def hello():
        return jsonify(hello="fork")

    return app
"""


def add_fork_package(context) -> None:
    """The fork's package, copied into the build context beside the demo's."""
    (context / FORK_PACKAGE).mkdir()
    (context / FORK_PACKAGE / "__init__.py").write_text(FORK_INIT)


# Requests that make the app or nginx answer with an error of their own,
# whatever the app's views are.
ERROR_REQUESTS = [
    ("GET", "/no-such-page", {}, 404),
    # A prefix APP_MOUNTS could mount (the demo's /admin), with nothing mounted.
    ("GET", "/admin/", {}, 404),
    ("DELETE", "/healthz", {}, 405),
    ("POST", "/", {"data": b"x" * (2 * 1024 * 1024)}, 413),
]


@pytest.fixture(scope="module")
def fork_stack(built_images, tmp_path_factory):
    """The stack with the app image built from a forked copy of the build
    context, as the fork guide says."""
    context = tmp_path_factory.mktemp("fork")
    overlay = app_build_context(context, "flask-concurrency-test/fork-app")
    add_fork_package(context)
    fork = Stack("fork", overlays=(overlay,), APP_MODULE=FORK_APP_MODULE)
    fork.docker.compose.build(services=["app"], quiet=True)
    try:
        yield fork.up()
    finally:
        fork.down()


@pytest.fixture(scope="module", params=["reference", "fork"])
def contract_stack(request):
    return request.getfixturevalue("stack" if request.param == "reference" else "fork_stack")


def test_root_answers_through_nginx_from_the_users_views(contract_stack):
    response = contract_stack.get("/")
    assert response.status_code == 200
    assert response.headers["Server"] == "nginx"  # server_tokens off: no version
    assert response.headers["Content-Type"].startswith("application/json")
    forked = contract_stack.project.startswith("flask-concurrency-test-fork")
    expected = {"hello": "fork"} if forked else {"service": "flask-concurrency"}
    assert expected.items() <= response.json().items()


def test_the_fork_has_no_demonstration_endpoints(fork_stack):
    for path in ("/work/io?ms=0", "/work/cpu?ms=0", "/client"):
        response = fork_stack.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["status"] == 404


#: The versions of what serves the app, as installed in its image.
VERSIONS = "import importlib.metadata as m; print(*(m.version(d) for d in ('flask', 'werkzeug', 'gunicorn', 'gevent')))"
PUBLIC_PATHS = ["/", "/healthz", "/readyz", "/work/io?ms=0", "/work/cpu?ms=0", "/client", "/nope"]


def test_no_public_response_reveals_versions_pids_or_hostnames(stack):
    replicas = stack.containers("app")
    pids = {p["pid"] for p in stack.processes("app")}
    versions = stack.docker.container.execute(replicas[0], ["python3", "-c", VERSIONS]).split()
    secrets_ = {*(app.config.hostname for app in replicas), platform.python_version(), *versions}
    for path in PUBLIC_PATHS:
        response = stack.get(path)
        seen = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
        for secret in secrets_:
            assert secret not in seen, (path, secret)
        body = response.json()
        assert not {"pid", "hostname", "versions", "server"} & set(body), (path, body)
        assert not {str(v) for v in body.values()} & pids, (path, body)


def test_no_public_request_may_ask_for_more_than_the_demo_budget(stack):
    config = stack.effective_config()
    caps = set()
    for path in ("/work/cpu?ms=30000", "/work/io?ms=30000"):
        response = stack.get(path)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["parameter"] == "ms"
        # The cap the app enforces, DEMO_MAX_WORK_MS as the app sees it (demo/demo.py's message).
        cap = re.fullmatch(r"ms must be a whole number of milliseconds from 0 to (\d+)", error["message"])
        assert cap, error
        caps.add(int(cap[1]))
    (cap,) = caps
    assert cap < config["timeout"] * 1000, (cap, config["timeout"])  # the cap is inside the worker's budget


@pytest.mark.parametrize(("path", "status"), [("/healthz", "ok"), ("/readyz", "ready")])
def test_health_endpoints(contract_stack, path, status):
    response = contract_stack.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == status, body
    # /healthz says nothing else; /readyz names the checks it ran (demo/health.py).
    assert set(body) == ({"status"} if path == "/healthz" else {"status", "checks"}), body


def test_app_sees_the_client_nginx_saw_not_a_forged_one(stack):
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "1"}
    client = stack.get("/client", headers=forged).json()
    assert client["remote_addr"] != "203.0.113.7"
    assert client["scheme"] == "http"
    assert client["host"] == f"127.0.0.1:{stack.port}"


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), ERROR_REQUESTS)
def test_errors_are_json_and_never_werkzeug(contract_stack, method, path, kwargs, status):
    response = contract_stack.request(method, path, **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["status"] == status
    assert "werkzeug" not in response.text.lower()
    assert "<html" not in response.text.lower()
    assert response.headers["Server"] == "nginx"


def test_oversized_body_is_refused_by_nginx_before_the_app(contract_stack):
    response = contract_stack.request("POST", "/", data=b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["source"] == "nginx"


@pytest.mark.parametrize(
    "path",
    ["/console", "/?__debugger__=yes&cmd=resource&f=style.css", "/healthz?__debugger__=yes&frm=0"],
)
def test_debugger_urls_are_not_found(contract_stack, path):
    response = contract_stack.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")


def test_no_response_header_names_werkzeug(contract_stack):
    for path in ["/", "/healthz", "/nope"]:
        response = contract_stack.get(path)
        assert all("werkzeug" not in value.lower() for value in response.headers.values()), path


def test_app_port_is_not_published_on_the_host(contract_stack):
    for app in contract_stack.containers("app"):
        published = [b for bs in (app.network_settings.ports or {}).values() if bs for b in bs]
        assert published == [], app.name
    for address in _host_addresses():
        with pytest.raises(OSError):
            socket.create_connection((address, 8000), timeout=2).close()


def test_app_address_is_unreachable_from_the_host(stack):
    engine = stack.docker.version().server.version
    if int(engine.split(".")[0]) < 28:
        pytest.skip(f"Docker {engine} always gives the host a route into bridge networks (isolated gateway: 28+)")
    for app in stack.containers("app"):
        for network in app.network_settings.networks.values():
            with pytest.raises(OSError):
                socket.create_connection((network.ip_address, 8000), timeout=2).close()


def _host_addresses() -> list[str]:
    """127.0.0.1 and the host's own IPv4 addresses (where a port published on
    0.0.0.0 would answer)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return ["127.0.0.1", *[a for a in out if "." in a]]


def test_only_nginx_is_published_on_loopback(contract_stack):
    nginx = contract_stack.container("nginx")
    bindings = [b for bs in nginx.network_settings.ports.values() if bs for b in bs]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)


def test_app_processes_are_a_gunicorn_master_and_its_workers(contract_stack):
    config = contract_stack.effective_config()
    replicas = contract_stack.containers("app")
    assert len(replicas) == 2, "APP_REPLICAS defaults to 2"
    for app in replicas:
        processes = contract_stack.processes("app", app)
        gunicorn = [p for p in processes if "gunicorn" in p["args"]]
        pids = {p["pid"] for p in gunicorn}
        masters = [p for p in gunicorn if p["ppid"] not in pids]
        workers = [p for p in gunicorn if p["ppid"] in pids]
        assert len(masters) == 1, processes
        assert len(workers) == config["workers"], processes
        assert all(w["ppid"] == masters[0]["pid"] for w in workers)
        for p in processes:
            assert "werkzeug" not in p["args"].lower()
            assert "flask run" not in p["args"] and "serving.devserver" not in p["args"]


def test_gunicorn_control_socket_is_on_the_tmpfs_and_answers(contract_stack):
    # gunicorn >= 25 would open it under $HOME; here it is /tmp, a tmpfs.
    config = contract_stack.effective_config()
    assert config["control_socket"] == "/tmp/gunicorn.ctl"
    for app in contract_stack.containers("app"):
        answer = contract_stack.docker.container.execute(
            app, ["gunicornc", "-s", "/tmp/gunicorn.ctl", "-c", "show workers", "-j"]
        )
        assert json.loads(answer)["count"] == config["workers"], app.name


@pytest.mark.parametrize("service", ["app", "nginx"])
def test_containers_run_as_non_root_on_a_read_only_root(contract_stack, service):
    processes = contract_stack.processes(service)
    assert processes
    assert all(p["uid"] != "0" for p in processes), processes
    for container in contract_stack.containers(service):
        assert container.host_config.readonly_rootfs is True
        assert container.host_config.cap_drop == ["ALL"]
        assert "no-new-privileges:true" in container.host_config.security_opt


def test_invalid_worker_class_makes_make_up_fail_fast_naming_the_variable(built_images):
    # On the tests' own images (built already): `make up` builds, then checks,
    # and starts nothing.
    bad = Stack("badclass")
    result = subprocess.run(
        ["make", "up"],
        cwd=REPO,
        env={**os.environ, **bad.cli_environment(), "WORKER_CLASS": "eventlet"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert result.returncode != 0
        assert "WORKER_CLASS='eventlet'" in result.stderr
        assert "sync, gthread, gevent" in result.stderr
        assert "Traceback" not in result.stderr
        # Fails at the check, before anything is started.
        assert project_containers(bad.project) == []
    finally:
        bad.down()


def test_invalid_value_stops_the_app_container_with_the_message(built_images):
    bad = Stack("badconcurrency", WEB_CONCURRENCY="lots")
    try:
        bad.docker.compose.up(services=["app"], detach=True, quiet=True)
        deadline = time.monotonic() + 30
        while "WEB_CONCURRENCY" not in bad.logs("app") and time.monotonic() < deadline:
            time.sleep(0.5)
        logs = bad.logs("app")
        assert "configuration error: WEB_CONCURRENCY='lots' is not valid" in logs
        assert "Traceback" not in logs
        with pytest.raises(requests.RequestException):
            requests.get(bad.url, timeout=2)
    finally:
        bad.down()


def test_nginx_loads_exactly_the_files_of_the_readmes_walk(stack):
    # `nginx -T` in the running container: the files of the walk of GET /
    # (tests/nginx_walk.py, the README's list) and the base image's
    # mime.types, in that order. The other servers (the JSON 421 default,
    # health, stub_status) include nothing the walk does not name.
    nginx = stack.container("nginx")
    loaded = loaded_files(stack.docker.container.execute(nginx, ["nginx", "-T", "-q", "-e", "stderr"]))
    assert [path for path in loaded if path not in BASE_IMAGE_FILES] == [path for path, _ in walk("http")]
    assert set(loaded) - {path for path, _ in walk("http")} == BASE_IMAGE_FILES


def test_nginx_without_a_setting_stops_with_one_line_naming_it(built_images):
    # The image's entrypoint renders nginx/templates; docker-compose.yml sets
    # every variable they use. Run without them, it refuses to start.
    result = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "flask-concurrency-test/nginx:local"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: ") and "is not set" in line
    named = re.search(r"configuration error: ([A-Z][A-Z0-9_]*) is not set", line)
    assert named, line
    # One of the variables docker-compose.yml hands nginx.
    nginx_env = Stack("nginx-env").docker.compose.config(return_json=True)["services"]["nginx"]["environment"]
    assert named[1] in nginx_env, (named[1], sorted(nginx_env))


#: A C extension published only as a source distribution (its last release,
#: 2013): the build stage has no compiler, so it cannot become a wheel there.
NEEDS_A_COMPILER = (
    "pycrypto==2.6.1 \\\n    --hash=sha256:f2ce1e989b272cfcb677616763e0a2e7ec659effa67a88aa92b3a65528f60a3c\n"
)


def test_a_dependency_that_needs_a_compiler_stops_the_build_naming_it(built_images, tmp_path):
    overlay = app_build_context(tmp_path, "flask-concurrency-test/needs-a-compiler")
    with (tmp_path / "requirements" / "app.txt").open("a") as lock:
        lock.write(NEEDS_A_COMPILER)
    built = Stack("needs-a-compiler", overlays=(overlay,)).compose("build", "app", timeout=900)
    assert built.returncode != 0
    # The build's own lines, after the builder's timing prefix.
    (line,) = re.findall(r"^(?:[\d.]+ )?(the image cannot be built: .*)$", built.stdout + built.stderr, re.MULTILINE)
    assert "pycrypto has no wheel for this platform" in line and "no compiler" in line, line


def test_the_runtime_image_carries_no_compiler(built_images):
    found = subprocess.run(
        ["docker", "run", "--rm", "flask-concurrency-test/app:local", "sh", "-c", "command -v gcc cc c++ clang"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode != 0 and found.stdout == "", found.stdout
