"""Compose stacks for the integration tests, driven with python-on-whales.

Each Stack is its own Compose project (its own containers, networks and host
port) built from the repository's docker-compose.yml, so tests never touch a
stack started with `make up`, and several configurations can be compared.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from python_on_whales import DockerClient

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
#: The tests' own image tags (harness/test-images.yml), never `make up`'s.
TEST_IMAGES = REPO / "harness" / "test-images.yml"

#: Every variable .env.example documents: scrubbed from the test process so
#: that a developer's exported WORKER_CLASS cannot leak into a test stack.
STACK_VARIABLES = tuple(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), flags=re.MULTILINE))


@functools.cache
def base_images(*extra: str) -> dict[str, str]:
    """PYTHON_BASE_IMAGE, NGINX_BASE_IMAGE and POSTGRES_BASE_IMAGE (with
    `monitoring`, Prometheus's and the exporter's too; with `bench`, the
    lab's Apache httpd's), resolved by the
    project's own script: the official images, or local stand-ins where none
    can be pulled. The Docker engine is made ready first (installed on a
    fresh machine: `make test` leaves it to the first test that needs it, so
    that the unit layer reports first), then the stack's secrets, as
    scripts/compose does for make's Compose calls."""
    with machine_set_up():
        subprocess.run([str(REPO / "scripts" / "ensure-docker.sh")], check=True)
        subprocess.run([str(REPO / "scripts" / "ensure-secrets.sh")], check=True, capture_output=True)
        out = subprocess.run(
            [str(REPO / "scripts" / "ensure-base-images.sh"), *extra], check=True, capture_output=True, text=True
        ).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


@contextlib.contextmanager
def machine_set_up():
    """One test process at a time sets the machine up (the engine, the
    secrets, the base images, then the tests' images): make test's stack
    phase runs several (pytest-xdist). The scripts hold their own locks
    (scripts/lib.sh's one_at_a_time); this one also keeps a second worker's
    build of the tests' images behind the first's, which it then finds
    cached, instead of building the same tags twice at once."""
    lock = REPO / ".cache" / "machine-set-up.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_build_context(directory: Path, image: str) -> Path:
    """A scratch copy of the app's build context in `directory`, for a test
    that changes the app (a fork's views, a deploy, a broken image) without
    touching the working tree. Returns a compose overlay that builds the app
    from it, tagged `image`."""
    for name in ("Dockerfile", ".dockerignore"):
        shutil.copy(REPO / name, directory / name)
    for name in ("demo", "serving", "requirements"):
        shutil.copytree(REPO / name, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = directory / "app-build.yml"
    overlay.write_text(json.dumps({"services": {"app": {"build": {"context": str(directory)}, "image": image}}}))
    return overlay


class Stack:
    def __init__(
        self,
        name: str,
        *,
        overlays: tuple[Path, ...] = (),
        profiles: tuple[str, ...] = (),
        project: str | None = None,
        test_images: bool = True,
        **env: str,
    ) -> None:
        """`overlays`: compose files applied over docker-compose.yml (the
        benchmark lab's bench/compose.yml); `profiles`: the Compose profiles
        to enable; `project`: a project name other than the tests' own;
        `test_images`: the tests' own image tags (TEST_IMAGES), which the
        lab and make tune, naming their own, turn off."""
        # pytest-xdist's workers (make test's stack phase) each start their
        # own session's stacks: the worker's id keeps their projects apart.
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.project = project or f"flask-concurrency-test-{name}" + (f"-{worker}" if worker else "")
        self.port = free_port()
        images = base_images(*[extra for extra in ("monitoring", "bench") if extra in profiles])
        self._env_file = Path(tempfile.mkdtemp(prefix="stack-")) / f"{name}.env"
        # The app's env_file (docker-compose.yml) is this stack's own too,
        # never the checkout's .env.
        self.env = {**images, "HTTP_PORT": str(self.port), "APP_ENV_FILE": str(self._env_file), **env}
        self._env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))
        self.docker = DockerClient(
            compose_files=[COMPOSE_FILE, *([TEST_IMAGES] if test_images else []), *overlays],
            compose_project_name=self.project,
            compose_project_directory=REPO,
            compose_env_files=[self._env_file],
            compose_profiles=list(profiles),
        )
        self.session = requests.Session()

    # --- lifecycle ---------------------------------------------------------

    def build(self) -> None:
        self.docker.compose.build(quiet=True)

    def up(self, timeout: int = 180) -> Stack:
        self.docker.compose.up(detach=True, wait=True, wait_timeout=timeout, remove_orphans=True, quiet=True)
        return self

    def down(self) -> None:
        self.docker.compose.down(remove_orphans=True, volumes=True, timeout=10, quiet=True)

    # --- talking to it -----------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kwargs)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.url + path, **kwargs)

    def containers(self, service: str) -> list:
        """Every container of the service: the app has APP_REPLICAS."""
        return sorted(self.docker.compose.ps(services=[service]), key=lambda c: c.name)

    def container(self, service: str):
        """The service's one container (nginx, or an app with one replica)."""
        containers = self.containers(service)
        assert len(containers) == 1, f"{service} has {len(containers)} containers; use containers()"
        return containers[0]

    def logs(self, service: str) -> str:
        return self.docker.compose.logs(services=[service], no_log_prefix=True)

    def effective_config(self) -> dict:
        """The JSON line gunicorn logged at start (serving/gunicorn_conf.py)."""
        lines = [line for line in self.logs("app").splitlines() if '"event": "gunicorn.config"' in line]
        assert lines, "gunicorn logged no effective configuration"
        return json.loads(lines[-1])

    def processes(self, service: str, container=None) -> list[dict[str, str]]:
        """`docker top` of the service's containers (or of one of them): uid,
        pid, ppid, args, and the container's name."""
        rows = []
        for each in [container] if container is not None else self.containers(service):
            out = subprocess.run(
                ["docker", "top", each.id, "-eo", "uid,pid,ppid,args"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.splitlines()
            for line in out[1:]:
                uid, pid, ppid, args = line.split(None, 3)
                rows.append({"uid": uid, "pid": pid, "ppid": ppid, "args": args, "container": each.name})
        return rows

    def wait_serving(self, timeout: float = 30) -> dict:
        """Until GET / answers through nginx (the stack is up); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self.get("/", timeout=5)
                if response.status_code == 200:
                    return response.json()
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url}/ did not answer 200 within {timeout} s")
            time.sleep(0.5)

    # --- the docker compose command line ----------------------------------

    def cli_environment(self) -> dict[str, str]:
        """The variables that point `make` and `scripts/compose` at this
        stack (its project, compose files and env file), so that a test runs
        a target exactly as a user would, on this stack."""
        config = self.docker.client_config
        return {
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_FILE": ":".join(str(f) for f in config.compose_files),
            "COMPOSE_ENV_FILES": str(self._env_file),
        }

    def compose(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None):
        """`docker compose ARGS` on this stack's project and env file, as a
        CompletedProcess (exit code, stdout, stderr), for what is easier to
        check on the command line than through python-on-whales, such as the
        exit code and output of `run`. `env` adds variables for Compose's
        interpolation (e.g. LOADTEST_REPORTS_DIR); `run -e` sets a container's;
        `input` is the command's standard input."""
        config = self.docker.client_config
        command = ["docker", "compose", "--project-name", self.project, "--project-directory", str(REPO)]
        for compose_file in config.compose_files:
            command += ["--file", str(compose_file)]
        for profile in config.compose_profiles or []:
            command += ["--profile", profile]
        command += ["--env-file", str(self._env_file), *args]
        return subprocess.run(
            command,
            env={**os.environ, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class SharedStacks:
    """Stacks by configuration, each started once for the whole run and used
    by every module that asks for the same settings (the edge's fuzzer and the
    operations' reloads run on the same three per-class stacks). A test on a
    shared stack leaves it serving in the configuration it found.

    tests/integration/conftest.py stops them after the last test that uses
    them, in the run's order (tests/conftest.py), not at the session's end:
    idle stacks' health checks would take CPU from the timing layers after."""

    def __init__(self) -> None:
        self._stacks: dict[tuple, Stack] = {}

    def get(self, name: str, **settings: str) -> Stack:
        key = tuple(sorted(settings.items()))
        if key not in self._stacks:
            self._stacks[key] = Stack(name, **settings).up()
        return self._stacks[key]

    def close(self) -> None:
        stacks, self._stacks = list(self._stacks.values()), {}
        for each in stacks:
            each.down()


def class_stack(shared_stacks: SharedStacks, worker_class: str) -> Stack:
    """The shared stack of one worker class: two replicas of two workers."""
    return shared_stacks.get(f"class-{worker_class}", WORKER_CLASS=worker_class, WEB_CONCURRENCY="2", APP_REPLICAS="2")


def project_containers(project: str) -> list[str]:
    """The ids of a Compose project's containers, in any state: what a check
    that must start nothing, or a run that must leave nothing, looks at."""
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def scrub_environment(*prefixes: str) -> None:
    """Nothing exported in the shell (WORKER_CLASS, COMPOSE_FILE, ...) may
    change what a stack runs: its env file says everything. `prefixes` names
    more families to drop (the lab's BENCH_)."""
    for name in list(os.environ):
        if name in STACK_VARIABLES or name.startswith(("COMPOSE_", *prefixes)):
            os.environ.pop(name, None)
