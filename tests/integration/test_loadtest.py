"""The load test (docker compose run loadtest) against the running stack:
short headless runs, the thresholds deciding the exit code, distributed mode.
See docs/loadtest.md."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.stack import REPO, TEST_IMAGES, free_port
from tests.integration.test_fork import copy_checkout

# timing: the README's command must pass the default thresholds (p95, rate),
# which a neighbour's load would break: make test runs it alone.
pytestmark = [pytest.mark.loadtest, pytest.mark.timing]

#: The request names of loadtest/locustfile.py's traffic mix, one per endpoint.
MIX = ["/", "/healthz", "/readyz", "/work/io?ms=[N]", "/work/cpu?ms=[N]", "/missing/[id] (404)"]

#: The load test's image (loadtest/compose.yml).
LOADTEST_IMAGE = "flask-concurrency-test/loadtest:local"

#: Short and light: the machine may be shared.
SHORT = {"LOCUST_USERS": "10", "LOCUST_SPAWN_RATE": "10", "LOCUST_RUN_TIME": "12s"}
#: For a run whose reports, not its traffic mix, are checked.
BRIEF = {**SHORT, "LOCUST_RUN_TIME": "5s"}


@pytest.fixture(scope="module")
def loadtest(stack):
    """Runs the loadtest service against the session's stack as `make
    loadtest` does; returns (CompletedProcess with .output, reports dir)."""
    built = stack.compose("--profile", "loadtest", "build", "--quiet", "loadtest", timeout=600)
    assert built.returncode == 0, built.stderr

    def run(tmp_path: Path, *run_args: str, workers: int = 0, writable: bool = True, **env: str):
        reports = tmp_path / "reports"
        reports.mkdir()
        # The test's own, as make loadtest makes it; the container takes its
        # owner's uid (or, the test being root, collects root's reports).
        if not writable:
            # Not even its owner may write there.
            reports.chmod(0o555)
        env = {"LOADTEST_REPORTS_DIR": str(reports), "LOCUST_WORKERS": str(workers), **env}
        if workers:
            started = stack.compose("--profile", "loadtest", "up", "-d", "--no-deps", "loadtest-worker", env=env)
            assert started.returncode == 0, started.stderr
        # --no-deps: the stack is up and healthy (the `stack` fixture) and must
        # not be recreated under the other tests of the session.
        result = stack.compose("run", "--rm", "-T", "--no-deps", *run_args, "loadtest", env=env, timeout=180)
        result.output = result.stdout + result.stderr
        return result, reports

    yield run
    stack.compose("--profile", "loadtest", "rm", "-fsv", "loadtest-worker")


def only(reports: Path, pattern: str) -> Path:
    (path,) = reports.glob(pattern)
    return path


def stats_rows(reports: Path) -> dict[str, dict[str, str]]:
    with only(reports, "loadtest-*_stats.csv").open(newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_headless_run_passes_and_reports_every_endpoint(loadtest, tmp_path):
    result, reports = loadtest(tmp_path, **SHORT)
    assert result.returncode == 0, result.output
    assert "Load test passed" in result.output

    html = only(reports, "loadtest-*.html")
    assert html.stat().st_size > 10_000
    assert "<html" in html.read_text(encoding="utf-8").lower()

    rows = stats_rows(reports)
    assert int(rows["Aggregated"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0, result.output
    for name in MIX:
        assert name in rows, f"no request reached {name}: {sorted(rows)}"
        assert int(rows[name]["Request Count"]) > 0, name

    summary = json.loads(only(reports, "loadtest-*_summary.json").read_text())
    assert summary["passed"] is True
    assert summary["failures"] == 0
    assert summary["requests"] == int(rows["Aggregated"]["Request Count"])
    assert all(t["passed"] for t in summary["thresholds"])


def test_threshold_that_cannot_hold_fails_the_run_naming_it(loadtest, tmp_path):
    # p95 within 1 ms, over a mix where /work/io alone waits 20-200 ms.
    result, reports = loadtest(tmp_path, **{**SHORT, "LOCUST_RUN_TIME": "4s", "LOADTEST_MAX_P95_MS": "1"})
    assert result.returncode == 1, result.output
    assert "threshold FAILED: p95 response time" in result.output
    assert "Load test FAILED" in result.output
    assert "LOADTEST_MAX_P95_MS" in result.output.split("Load test FAILED", 1)[1]
    summary = json.loads(only(reports, "loadtest-*_summary.json").read_text())
    assert summary["passed"] is False
    # The others (the default minimum rate) hold or not with the machine's load.
    failed = {t["variable"]: t for t in summary["thresholds"] if not t["passed"]}
    assert failed["LOADTEST_MAX_P95_MS"]["measured"] > 1, failed


def test_invalid_threshold_stops_before_any_request_naming_the_variable(loadtest, tmp_path):
    result, reports = loadtest(tmp_path, LOADTEST_MIN_RPS="lots")
    assert result.returncode == 2, result.output
    assert "LOADTEST_MIN_RPS='lots' is not valid" in result.output
    assert "Traceback" not in result.output
    assert list(reports.glob("loadtest-*")) == []


def test_only_the_stacks_nginx_can_be_targeted(loadtest, tmp_path):
    result, reports = loadtest(tmp_path, "-e", "LOCUST_HOST=http://example.com")
    assert result.returncode == 2, result.output
    assert "not this stack's nginx" in result.output
    assert list(reports.glob("loadtest-*")) == []


def test_distributed_mode_adds_up_both_workers(loadtest, tmp_path):
    result, reports = loadtest(tmp_path, "--use-aliases", workers=2, **SHORT)
    assert result.returncode == 0, result.output
    assert "master of 2 workers" in result.output
    summary = json.loads(only(reports, "loadtest-*_summary.json").read_text())
    assert summary["distributed"] is True
    per_worker = summary["worker_requests"]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    # The report covers both workers: its count is their sum.
    assert summary["requests"] == sum(per_worker.values())
    assert int(stats_rows(reports)["Aggregated"]["Request Count"]) == summary["requests"]
    assert only(reports, "loadtest-*.html").stat().st_size > 10_000


def test_loadtest_services_are_hardened_and_reach_only_nginx(stack):
    result = stack.compose("--profile", "loadtest", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in ("loadtest", "loadtest-worker", "loadtest-ui"):
        service = services[name]
        assert service["profiles"] == ["loadtest"], name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        # Root only to take the reports directory's owner's uid, and only
        # what that takes (loadtest/entrypoint.py); locust itself never runs
        # as root (tests/unit/test_loadtest_entrypoint.py).
        assert service["user"] == "0:0" and sorted(service["cap_add"]) == ["SETGID", "SETUID"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert list(service["networks"]) == ["edge"], name
    # Depending on nothing of the stack: Compose would converge it first
    # (test_operations.py checks that a run leaves the stack as it was).
    for name in ("loadtest", "loadtest-ui"):
        assert not {"nginx", "app"} & set(services[name].get("depends_on", {})), name
    ports = services["loadtest-ui"]["ports"]
    assert ports and all(p["host_ip"] == "127.0.0.1" for p in ports)


def test_a_reports_directory_it_cannot_write_costs_the_reports_not_the_run(loadtest, tmp_path):
    # A reports directory not even its owner may write: the run still
    # measures and gates, and names no report it did not keep.
    result, reports = loadtest(tmp_path, writable=False, **BRIEF)
    assert result.returncode == 0, result.output
    assert "Load test passed" in result.output
    assert "not writable by uid" in result.output and "chmod u+w loadtest/reports" in result.output
    assert "Reports: none kept" in result.output
    assert list(reports.iterdir()) == []


def _checkout_owned_by(root: Path, uid: int, gid: int) -> None:
    """A scratch copy of the checkout, owned by uid:gid, as a clone of that
    user's is. Not root, the test cannot chown: Docker's root does it (the
    load test's image, as root, for this once)."""
    copy_checkout(root)
    if os.getuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.chown(path, uid, gid, follow_symlinks=False)
    elif (uid, gid) != (os.getuid(), os.getgid()):
        subprocess.run(
            ["docker", "run", "--rm", "--user", "0:0", "--entrypoint", "chown", "-v", f"{root}:/checkout"]
            + [LOADTEST_IMAGE, "-R", f"{uid}:{gid}", "/checkout"],
            check=True,
            capture_output=True,
            timeout=120,
        )


@pytest.mark.parametrize("owner", [(1000, 1000), (0, 0)], ids=["uid-1000", "root"])
def test_the_readmes_command_leaves_its_reports_in_the_checkout_owned_by_its_owner(loadtest, stack, tmp_path, owner):
    """`docker compose run --rm loadtest`, as the README writes it, with no
    variable for the reports, in a checkout owned by uid 1000, then by root,
    after the stack is up: the HTML, CSV and JSON reports are in its
    loadtest/reports/, owned by the checkout's owner, and named there."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _checkout_owned_by(checkout, *owner)
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(("COMPOSE_", "LOCUST_", "LOADTEST_"))
    }
    # The session's stack, which is up, and the tests' image of the load test.
    env.update(
        COMPOSE_PROJECT_NAME=stack.project,
        COMPOSE_FILE=f"docker-compose.yml:{TEST_IMAGES}",
        **BRIEF,
    )
    result = subprocess.run(
        ["docker", "compose", "run", "--rm", "loadtest"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Load test passed" in output
    reports = checkout / "loadtest" / "reports"
    html, csv_file, summary = (only(reports, f"loadtest-*{end}") for end in (".html", "_stats.csv", "_summary.json"))
    for path in (html, csv_file, summary):
        assert (path.stat().st_uid, path.stat().st_gid) == owner, path
    assert json.loads(summary.read_text())["passed"] is True
    # Named where the host has them, relative to the checkout.
    name = html.name.removesuffix(".html")
    (line,) = [line for line in output.splitlines() if "Reports:" in line]
    assert f"Reports: ./loadtest/reports/{name}.html, ./loadtest/reports/{name}_stats.csv," in line
    print(subprocess.run(["ls", "-ln", str(reports)], capture_output=True, text=True, check=True).stdout)


def test_the_readmes_loadtest_command_works_in_a_fresh_clone_right_after_make_up(tmp_path):
    """`make up`, then `docker compose run --rm loadtest` exactly as the
    README writes it, in a fresh clone and a shell that exports no base
    image: where no registry answers, only `make up` knows the local
    stand-ins, so it must leave the load test's image built. The image is
    removed first, so that an earlier build cannot stand in for that."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith("_BASE_IMAGE") and not name.startswith(("COMPOSE_", "LOCUST_", "LOADTEST_"))
    }
    env.update(
        COMPOSE_PROJECT_NAME="flask-concurrency-test-readme",
        HTTP_PORT=str(free_port()),
        LOCUST_USERS="10",
        LOCUST_SPAWN_RATE="10",
        LOCUST_RUN_TIME="10s",
    )
    # The clone's own tag (docker-compose.yml names images after the
    # project), never the tests' shared one, which other stacks may be running.
    clones_image = f"{env['COMPOSE_PROJECT_NAME']}/loadtest:local"
    subprocess.run(["docker", "image", "rm", "--force", clones_image], capture_output=True, timeout=120, check=False)

    def run(*command: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout, check=False)

    try:
        up = run("make", "up", timeout=900)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        loadtest = run("docker", "compose", "run", "--rm", "loadtest", timeout=300)
        output = loadtest.stdout + loadtest.stderr
        assert loadtest.returncode == 0, output[-3000:]
        assert "Load test passed" in output
        reports = clone / "loadtest" / "reports"
        summary = json.loads(only(reports, "loadtest-*_summary.json").read_text())
        assert summary["passed"] is True and summary["requests"] > 0
        assert only(reports, "loadtest-*.html").stat().st_size > 10_000
    finally:
        run("make", "down", timeout=300)
        # make down keeps a stack's volumes (a user's data); the test's are its own.
        run("scripts/compose", "--profile", "*", "down", "--volumes", timeout=300)
