"""The product as a Docker Swarm stack (make swarm-up, docs/scaling.md), on a
single-node swarm: served through nginx, hardened, and updated, scaled and
rolled back under load without a failed request. Scaling to four tasks and
back is left out of the default run (`-m full` or `-m swarm` runs it).

The tests need this engine's swarm mode for themselves: they initialise a
swarm and leave it afterwards. They are skipped, saying why, where the engine
is already in a swarm (someone's own, which they must not touch), runs
containers other than the tests' (leaving a swarm breaks their DNS), or
cannot run one. One
node only: this machine cannot run a second Docker engine (no privileged
containers), so several nodes are documented, not tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from harness.load import Load
from harness.stack import REPO, Stack, app_build_context, free_port

pytestmark = [pytest.mark.integration, pytest.mark.swarm]

STACK = "flask-concurrency-test-swarm"
PATH = "/work/io?ms=20"
ORIGINAL_VIEWS = (REPO / "demo" / "views.py").read_text()
#: Longest a scale, an update or a rollback may take (`make swarm-up`, image
#: build included; docs/scaling.md says so). Measured in one run on a 2-core
#: machine: 17 s and 20 s to scale, 45 s for a rolling update of 2 tasks
#: (start-first, each watched for 20 s), 32 s for a rollback; four times the
#: slowest, for a shared 2-core machine.
EVENT_WITHIN_S = 180


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture(scope="module")
def swarm():
    """A swarm of this engine's own, initialised for the module and left after it."""
    state = docker("info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state != "inactive":
        pytest.skip(f"this engine is in a swarm already ({state}): the swarm tests need one of their own to leave")
    # Leaving the swarm breaks the DNS of every container running on the
    # engine: a stack someone started (make up) would lose its app.
    others = [
        name
        for name in docker("ps", "--format", '{{.Label "com.docker.compose.project"}}/{{.Names}}').stdout.split()
        if not name.startswith("flask-concurrency-test")
    ]
    if others:
        pytest.skip(
            f"containers other than the tests' run on this engine, and leaving a swarm breaks their DNS: {others}"
        )
    init = docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=False)
    if init.returncode != 0:
        pytest.skip(f"this engine cannot run a swarm: {init.stderr.strip()}")
    try:
        yield
    finally:
        # This breaks name resolution in every container started before it
        # (moby#45144), not in later ones: make test runs the swarm tests
        # before any other stack, a plain pytest after every other test
        # (tests/conftest.py).
        docker("swarm", "leave", "--force", check=False)


@pytest.fixture(scope="module")
def deployed(swarm, built_images, tmp_path_factory):
    """make swarm-up, with the app built from a scratch copy of the build
    context (so that a test can change it); removed with make swarm-down."""
    context = tmp_path_factory.mktemp("swarm")
    overlay = app_build_context(context, "flask-concurrency-test/swarm-app:local")
    port = free_port()
    stack = Stack("swarm", overlays=(overlay,), HTTP_PORT=str(port))
    stack.port = port
    stack.context = context
    stack.project = STACK
    environment = {**os.environ, **stack.cli_environment(), "HTTP_PORT": str(port), "APP_REPLICAS": "2"}

    def make(target: str, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["make", "--no-print-directory", target],
            cwd=REPO,
            env={**environment, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        result.output = result.stdout + result.stderr
        return result

    stack.make = make
    try:
        up = make("swarm-up")
        assert up.returncode == 0, up.output
        stack.wait_serving(timeout=60)
        yield stack
    finally:
        down = make("swarm-down")
        # docker stack rm keeps the stack's volumes (a user's data); the test's are its own.
        volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}").stdout.split()
        if volumes:
            docker("volume", "rm", *volumes, check=False)
        assert down.returncode == 0, down.output


def tasks(service: str) -> list[dict]:
    out = docker("service", "ps", f"{STACK}_{service}", "--filter", "desired-state=running", "--format", "{{json .}}")
    return [json.loads(line) for line in out.stdout.splitlines()]


def service_image(service: str) -> str:
    return docker("service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", f"{STACK}_{service}").stdout


def nginx_errors() -> str:
    """nginx's own error lines (not its JSON access log), to read a failure by."""
    logs = (
        docker("service", "logs", "--raw", f"{STACK}_nginx").stdout
        + docker("service", "logs", "--raw", f"{STACK}_nginx").stderr
    )
    return "\n".join(line for line in logs.splitlines() if not line.startswith("{"))[-3000:]


#: Load before and after each event, as in the operations tests.
SETTLE_SECONDS = 1.5


def under_load(stack, action):
    load = Load(stack.url + PATH)
    try:
        time.sleep(SETTLE_SECONDS)
        started = time.monotonic()
        outcome = action()
        took = time.monotonic() - started
        time.sleep(SETTLE_SECONDS)
    finally:
        result = load.stop()
    return result, outcome, took


def test_make_swarm_up_serves_through_nginx_from_both_replicas(deployed):
    assert deployed.get("/").json() == {"service": "flask-concurrency", "status": "ok"}
    assert len(tasks("app")) == 2
    # Spread over 4 s, twice nginx's resolver `valid` (2 s): a task that
    # joined Swarm's DNS just after nginx's last lookup is in the next one.
    for _ in range(40):
        deployed.get("/work/io?ms=1")
        time.sleep(0.1)
    time.sleep(1.5)  # nginx flushes its access log every second
    logs = docker("service", "logs", "--raw", f"{STACK}_nginx").stdout.splitlines()
    upstreams = {json.loads(line)["upstream_addr"] for line in logs if '"path":"/work/io"' in line}
    assert len(upstreams) == 2, f"nginx balances over both tasks (DNS round robin): {upstreams}"


def test_the_hardening_holds_in_swarm(deployed):
    published = json.loads(docker("service", "inspect", f"{STACK}_nginx", f"{STACK}_app").stdout)
    ports = {s["Spec"]["Name"]: s["Endpoint"].get("Ports", []) for s in published}
    assert ports[f"{STACK}_app"] == [], "only nginx is published"
    assert [p["PublishMode"] for p in ports[f"{STACK}_nginx"]] == ["host"]
    for service in published:
        spec = service["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert spec.get("ReadOnly") is True, spec
        assert spec.get("CapabilityDrop") == ["ALL"], spec
    containers = docker("ps", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}").stdout.split()
    assert len(containers) == 3, docker("stack", "ps", STACK).stdout
    for container in containers:
        top = docker("top", container, "-eo", "uid,pid").stdout.split()[2::2]
        assert top and "0" not in top, (container, top)


@pytest.mark.full
def test_scaling_to_four_and_back_fails_no_request(deployed):
    """Not in the default run (-m full or -m swarm runs it): its scaling is Compose's
    (test_operations.py's 2 -> 3 -> 2 under load); Swarm's own, task by task,
    is about a minute more."""
    result, up, took = under_load(deployed, lambda: deployed.make("swarm-up", APP_REPLICAS="4"))
    print(f"\nscale 2 -> 4 in {took:.0f} s: {result.summary()}")
    assert up.returncode == 0, up.output
    assert result.failed == 0, (result.summary(), nginx_errors())
    assert took < EVENT_WITHIN_S, f"{took:.0f} s"
    assert len(tasks("app")) == 4
    result, down, took = under_load(deployed, lambda: deployed.make("swarm-up"))
    print(f"scale 4 -> 2 in {took:.0f} s: {result.summary()}")
    assert down.returncode == 0, down.output
    assert result.failed == 0, (result.summary(), nginx_errors())
    assert took < EVENT_WITHIN_S, f"{took:.0f} s"
    assert len(tasks("app")) == 2


def test_a_rolling_update_after_an_app_change_fails_no_request(deployed):
    before = service_image("app")
    (deployed.context / "demo" / "views.py").write_text(
        ORIGINAL_VIEWS.replace('status="ok"', 'status="ok", release="next"')
    )
    try:
        result, updated, took = under_load(deployed, lambda: deployed.make("swarm-up"))
    finally:
        (deployed.context / "demo" / "views.py").write_text(ORIGINAL_VIEWS)
    print(f"\nrolling update of 2 tasks in {took:.0f} s: {result.summary()}")
    assert updated.returncode == 0, updated.output
    assert result.failed == 0, (result.summary(), nginx_errors())
    assert took < EVENT_WITHIN_S, f"{took:.0f} s"
    assert service_image("app") != before
    assert deployed.get("/").json()["release"] == "next"


def test_a_broken_update_rolls_back_by_itself(deployed):
    before = service_image("app")
    # It loads, so swarm-up's own check passes; every request, health checks included, fails.
    broken = ORIGINAL_VIEWS + '\n\n@bp.before_app_request\ndef broken():\n    raise RuntimeError("broken on purpose")\n'
    (deployed.context / "demo" / "views.py").write_text(broken)
    try:
        result, updated, took = under_load(deployed, lambda: deployed.make("swarm-up"))
    finally:
        (deployed.context / "demo" / "views.py").write_text(ORIGINAL_VIEWS)
    print(f"\nbroken update rolled back in {took:.0f} s: {result.summary()}")
    assert updated.returncode != 0
    assert "rolled back" in updated.output, updated.output
    assert result.failed == 0, (result.summary(), nginx_errors())
    assert took < EVENT_WITHIN_S, f"{took:.0f} s"
    assert service_image("app") == before
    assert deployed.get("/").status_code == 200


def test_make_swarm_down_leaves_nothing(deployed):
    down = deployed.make("swarm-down")
    assert down.returncode == 0, down.output
    label = f"label=com.docker.stack.namespace={STACK}"
    assert docker("ps", "-aq", "--filter", label).stdout.strip() == ""
    assert docker("network", "ls", "-q", "--filter", label).stdout.strip() == ""
    assert docker("service", "ls", "-q", "--filter", label).stdout.strip() == ""
    # The fixture's own swarm-down then finds nothing to do, and says so by succeeding.
