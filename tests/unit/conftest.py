"""Shared fixtures and helpers for the unit tests.

Nothing here needs Docker or the network beyond 127.0.0.1. Subprocesses (gunicorn,
the development server, gunicorn's config loader) run from the repository root
with an environment stripped of every variable the app reads, so that the
developer's own shell cannot change the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from werkzeug.test import Client

from demo import config
from demo.factory import create_app
from harness.stack import free_port  # noqa: F401 - the unit tests' too
from serving import settings
from serving.app import answer_errors_in_json
from serving.metrics_master import ENVIRONMENT_VARIABLE as METRICS_DIR_VARIABLE
from serving.middleware import wrap
from serving.settings import BUDGET, VARIABLES

REPO_ROOT = Path(__file__).resolve().parents[2]


#: Environment variables the app, gunicorn, prometheus_client or Flask read; never inherited.
_APP_VARIABLES = {
    "APP_ENV",
    "WORKER_CLASS",
    "WEB_CONCURRENCY",
    "FORWARDED_ALLOW_IPS",
    "XDG_RUNTIME_DIR",
    "FLASK_RUN_FROM_CLI",
    "PYTHONPATH",
    # What the server hands the app (serving/app.py).
    "SECRET_KEY",
    "PGPASSFILE",
    "PGCONNECT_TIMEOUT",
    METRICS_DIR_VARIABLE,
    METRICS_DIR_VARIABLE.lower(),
    *(variable.name for variable in (*VARIABLES, *BUDGET)),
    *(setting.name for setting in config.VARIABLES),
}
_APP_PREFIXES = ("GUNICORN_", "FLASK_")

#: Longest wait for a subprocess server to answer.
START_TIMEOUT = 20.0


# --- in-process app ---------------------------------------------------------


@pytest.fixture(autouse=True)
def flask_as_it_ships(monkeypatch):
    """Loading an app the server's way sizes every Flask app made after it
    (serving/pools.py sets two of Flask's class attributes): put back after
    each test, so no test sees another's sizing."""
    from flask import Flask

    monkeypatch.setattr(Flask, "config_class", Flask.config_class)
    monkeypatch.setattr(Flask, "default_config", Flask.default_config)


@pytest.fixture
def app(monkeypatch):
    """A fresh demo app per test, so a test can register throwaway routes,
    as the server loads it (its errors answered in JSON where it has no
    handler of its own); the settings are the defaults, whatever the
    developer's shell exports."""
    for name in (*(v.name for v in VARIABLES), *(s.name for s in config.VARIABLES), "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    # No metrics in-process: they are the real gunicorn tests' (test_metrics.py).
    monkeypatch.delenv(METRICS_DIR_VARIABLE, raising=False)
    application = create_app()
    answer_errors_in_json(application)
    return application


def served_by_the_server(application) -> Client:
    """A test client of `application` as the server loads and serves it:
    its errors answered in JSON where it has no handler of its own, inside
    the server's layers (health, the body limit, the request id), with the
    default settings."""
    answer_errors_in_json(application)
    return Client(wrap(application, settings.load({}, cpus=1)))


@pytest.fixture
def client(app):
    """The demo app as a request through gunicorn finds it."""
    return served_by_the_server(app)


@pytest.fixture
def served(app):
    """served(**env) -> a test client of `app` as gunicorn serves it: inside
    the server's middleware (ProxyFix, the request id, the draining gate),
    with the server's settings read from `env` alone."""

    def make(**env: str) -> Client:
        return Client(wrap(app, settings.load(env, cpus=1)))

    return make


# --- subprocess helpers ------------------------------------------------------


def is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def clean_env(home: Path, **overrides: str) -> dict[str, str]:
    """os.environ without anything the app reads, HOME pointed at `home`,
    plus `overrides`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _APP_VARIABLES and not name.startswith(_APP_PREFIXES)
    }
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(overrides)
    return env


def http_get_json(url: str | urllib.request.Request, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid`, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: comm may hold spaces, so split after ")".
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path | None = None, timeout: float = START_TIMEOUT):
    """Poll `url` until it answers 200 with JSON; fail at once if `proc` exits,
    and after `timeout` seconds otherwise. Returns the JSON body."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log.read_text() if log else ""
            pytest.fail(f"server exited with status {proc.returncode} before answering {url}:\n{output}")
        try:
            status, body = http_get_json(url, timeout=2.0)
            if status == 200:
                return body
        except (OSError, ValueError) as exc:  # not listening yet, or a half-started server
            last_error = exc
        time.sleep(0.1)
    output = log.read_text() if log else ""
    pytest.fail(f"{url} did not answer within {timeout} s (last error: {last_error!r}):\n{output}")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a subprocess we started; kill it if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], log: Path, port: int, path: str = "/"):
    """Start `python ARGS` from the repository root, wait until
    http://127.0.0.1:PORT/PATH answers, yield (proc, first JSON body); the
    process is always stopped on the way out. stderr goes to `log`, stdout
    to `log` with the suffix .stdout."""
    with log.open("wb") as err, log.with_suffix(".stdout").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        body = wait_until_serving(f"http://127.0.0.1:{port}{path}", proc, log)
        yield proc, body
    finally:
        stop(proc)


def run_python(args: list[str], env: dict[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run `python ARGS` from the repository root and capture its output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Helpers:
    """The helpers above, handed to tests as the `helpers` fixture (test
    modules do not import conftest)."""

    repo_root = REPO_ROOT
    free_port = staticmethod(free_port)
    is_listening = staticmethod(is_listening)
    children_of = staticmethod(children_of)
    http_get_json = staticmethod(http_get_json)
    wait_until_serving = staticmethod(wait_until_serving)
    serving = staticmethod(serving)
    run_python = staticmethod(run_python)
    stop = staticmethod(stop)


@pytest.fixture
def helpers():
    return Helpers


@pytest.fixture
def env_factory(tmp_path):
    """env_factory(**overrides) -> a clean environment with HOME in tmp_path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def make(**overrides: str) -> dict[str, str]:
        return clean_env(home, **overrides)

    return make


@pytest.fixture
def gunicorn(tmp_path, env_factory):
    """gunicorn(*args, **env) -> context manager that really runs
    `gunicorn -c python:serving.gunicorn_conf [ARGS]` on 127.0.0.1 with a free
    port and a control socket in tmp_path (the config's /tmp/gunicorn.ctl
    would collide with any other gunicorn). Metrics go to a free METRICS_PORT
    from tmp_path/metrics unless `env` says otherwise. Yields a GunicornRun."""

    @contextlib.contextmanager
    def run(*extra_args: str, **env_overrides: str):
        port = free_port()
        control_socket = tmp_path / "gunicorn.ctl"
        log = tmp_path / "gunicorn.log"
        env_overrides.setdefault("METRICS_PORT", str(free_port()))
        env_overrides.setdefault(METRICS_DIR_VARIABLE, str(tmp_path / "metrics"))
        args = [
            "-m",
            "gunicorn",
            "-c",
            "python:serving.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--control-socket",
            str(control_socket),
            *extra_args,
        ]
        with serving(args, env_factory(**env_overrides), log, port) as (proc, body):
            yield GunicornRun(
                proc=proc,
                port=port,
                log=log,
                control_socket=control_socket,
                index=body,
                metrics_port=int(env_overrides["METRICS_PORT"]),
                metrics_dir=Path(env_overrides[METRICS_DIR_VARIABLE]),
            )

    return run


class GunicornRun:
    def __init__(
        self,
        proc: subprocess.Popen,
        port: int,
        log: Path,
        control_socket: Path,
        index: dict,
        metrics_port: int = 0,
        metrics_dir: Path | None = None,
    ):
        self.proc = proc
        self.port = port
        self.log = log
        self.stdout = log.with_suffix(".stdout")
        self.control_socket = control_socket
        self.index = index  # the JSON of the first successful GET /
        self.metrics_port = metrics_port
        self.metrics_dir = metrics_dir

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.port}{path}"
        if not headers:
            return http_get_json(url)
        return http_get_json(urllib.request.Request(url, headers=headers))

    def children(self) -> list[int]:
        """The pids of the master's child processes (workers, metrics server)."""
        return children_of(self.proc.pid)

    def config_lines(self) -> list[dict]:
        """Every JSON line with "event": "gunicorn.config" on stderr so far."""
        found = []
        for line in self.log.read_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "gunicorn.config":
                found.append(record)
        return found
