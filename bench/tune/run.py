"""The lab, pointed at a tune's candidates: bench/lab.py's Lab with the
tune's generated overlay instead of bench/compose.yml, the load test's own
image and the profile's locustfile as the generator, the database's limits
read from the server before any candidate is chosen, and memory read beside
the lab's CPU figures."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench import generators
from bench.cpu import Snapshot
from bench.lab import Lab, LabError
from bench.matrix import Config, Profile, Workload
from bench.tune import compose
from bench.tune.candidates import Candidate
from bench.tune.settings import TuneError, TuneSettings
from harness.stack import Stack
from serving.budget import LIMITS

PROJECT = "flask-concurrency-tune"
TARGET = "http://nginx:8080"
#: How long the throwaway PostgreSQL may take to accept connections.
DATABASE_WAIT_S = 90

#: Read inside an app container: its cgroup's memory in use, v2 then v1.
_MEMORY_INSIDE = "cat /sys/fs/cgroup/memory.current 2>/dev/null || cat /sys/fs/cgroup/memory/memory.usage_in_bytes"


def config_for(candidate: Candidate, database: bool) -> Config:
    names = compose.service_names(candidate)
    return Config(
        key=candidate.key,
        label=candidate.label,
        family="nginx+gunicorn",
        generator=names["generator"],
        base_url=TARGET,
        app_service=names["app"],
        front_service=names["front"],
        settings=" ".join(f"{k}={v}" for k, v in candidate.environment().items()),
        services=("db",) if database else (),
        database_connections=candidate.connections,
    )


def workload_for(settings: TuneSettings) -> Workload:
    load = (
        "the locustfile's LoadTestShape, stopped at each run's end"
        if settings.shape
        else f"{settings.users} users spawned at {settings.spawn_rate:g}/s"
    )
    return Workload(
        key="tune",
        label=settings.locustfile.name,
        tool="locust",
        path="",
        concurrency=settings.users,
        description=f"{settings.shown_locustfile}, {load}",
    )


def profile_for(settings: TuneSettings, repetitions: int) -> Profile:
    return Profile(
        name="tune-quick" if settings.quick else "tune",
        repetitions=repetitions,
        duration=float(settings.run_seconds),
        warmup=float(settings.spawn_seconds),
        quick=settings.quick,
    )


#: Seconds locust takes to start (its imports, the locustfile's) before the
#: load begins: the bound counts from the moment locust starts.
STARTUP_S = 2
#: Seconds locust has, after the SIGINT at the run's end, to stop its users
#: and print its summary before it is killed.
STOP_S = 30
#: timeout(1)'s exit status when the time ran out and it stopped the command.
STOPPED = 124
#: What locust exits with when it ended by itself: 0, or 1 when a request
#: failed or the locustfile's own thresholds did (the figures say how).
ENDED = (0, 1)
#: A shape run that ended this much before its planned seconds ended early.
EARLY_SLACK_S = 1.0


def bound_seconds(seconds: int, spawn_seconds: int) -> int:
    """When a run is stopped, counted from locust's start."""
    return seconds + spawn_seconds + STARTUP_S


def locust_command(settings: TuneSettings, seconds: int, spawn_seconds: int) -> list[str]:
    """locust in the load test's image, on the profile's locustfile, headless,
    its summary as JSON; bounded by timeout(1), whatever the locustfile does.

    locust ignores --run-time when the locustfile has a LoadTestShape, and a
    shape's tick() may never return None: at the run's end timeout sends
    SIGINT, on which locust stops its users and prints its summary as on
    Ctrl-C (its SIGTERM handler is installed only after a shape's run), and
    kills it STOP_S later if it has not stopped. --run-time is passed still:
    without a shape it ends the load on locust's own clock, a little before
    the SIGINT; and a locustfile may require one (the load test's own does)."""
    command = [
        "timeout",
        "--signal=INT",
        f"--kill-after={STOP_S}",
        f"{bound_seconds(seconds, spawn_seconds)}s",
        "locust",
        "-f",
        f"{compose.PROFILE_MOUNT}/{settings.locustfile.name}",
        "--headless",
        "--host",
        TARGET,
        "--run-time",
        f"{seconds + spawn_seconds}s",
        "--stop-timeout",
        "0",
        "--json",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    if not settings.shape:
        # The figures count from the moment every user is running.
        command += ["--users", str(settings.users), "--spawn-rate", f"{settings.spawn_rate:g}", "--reset-stats"]
    return command


def stopped_by_us(returncode: int, stderr: str) -> bool:
    """Whether the tune stopped locust at the run's end (True) or locust ended
    by itself (False); LabError when it did neither."""
    if returncode == STOPPED:
        return True
    if returncode in ENDED:
        return False
    # Killed: docker exec says 137, as a shell does; a direct child, -9.
    if returncode in (128 + 9, -9):
        raise LabError(f"locust did not stop within {STOP_S} s of the SIGINT at the run's end, and was killed")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    raise LabError(f"locust exited {returncode}: {lines[-1] if lines else 'nothing on stderr'}")


def ended_early(shape: bool, stopped: bool, ran_s: float, planned_s: float) -> bool:
    """A shape run that locust ended itself (the shape's tick() returned None)
    before the run's planned seconds. Without a shape, locust ends the run
    itself at --run-time: that is the plan."""
    return shape and not stopped and ran_s < planned_s - EARLY_SLACK_S


def locustfile_problem(returncode: int, stdout: str, stderr: str) -> str | None:
    """What keeps a locustfile from running, from `locust --list`'s output:
    it did not load (the last line locust printed, an import error's), or it
    has no User class to run; None when it can run."""
    if returncode != 0:
        lines = [line.strip() for line in (stderr + stdout).splitlines() if line.strip()]
        return f"does not load: {lines[-1] if lines else f'locust exited {returncode}'}"
    _, listed, users = stdout.partition("Available Users:")
    if not listed or not users.split():
        return "defines no User class: locust has no user to run"
    return None


def parse_stats(stdout: str) -> list[dict]:
    """locust's --json array, wherever the locustfile's own output puts it."""
    start = stdout.find("[")
    while start != -1:
        try:
            stats, _ = json.JSONDecoder().raw_decode(stdout[start:])
        except json.JSONDecodeError:
            start = stdout.find("[", start + 1)
            continue
        if isinstance(stats, list):
            return stats
        start = stdout.find("[", start + 1)
    raise LabError(f"locust printed no statistics: {stdout[-500:]}")


class TuneLab(Lab):
    def __init__(
        self,
        settings: TuneSettings,
        overlay_path: Path,
        *,
        project: str = PROJECT,
        app_image: str = compose.APP_IMAGE,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(
            profile_for(settings, 1),
            (),
            (workload_for(settings),),
            log=log,
            app_cpus=settings.app_cpus,
            project=project,
        )
        self.settings = settings
        self.overlay_path = overlay_path
        self.app_image = app_image
        self.candidates: list[Candidate] = []
        self.stack = Stack("tune", overlays=(overlay_path,), profiles=("tune",), project=project, test_images=False)
        self._migrated = False
        #: The database's CPU during the run in progress: cores over the
        #: load's seconds, and over the snapshots' window.
        self._database_cpu: tuple[float, float] | None = None

    # --- the overlay and the containers --------------------------------------

    def write_overlay(self) -> None:
        s = self.settings
        data = compose.overlay(
            self.candidates,
            cpus=s.app_cpus,
            memory=s.memory,
            profile_dir=s.locustfile.parent,
            app_env=s.app_env,
            database=s.database,
            app_image=self.app_image,
        )
        compose.write(self.overlay_path, data)

    def build(self, app: bool = True) -> None:
        """The app's image (unless it is given), nginx's, the database's, the
        load test's and the plots'."""
        self.write_overlay()
        services = (["app"] if app else []) + ["nginx"] + (["db"] if self.settings.database else [])
        self.log(f"building the images: {', '.join(services)}, the load test's and the plots'")
        self.stack.docker.compose.build(services=services, quiet=True)
        self.stack.compose("--profile", "loadtest", "build", "loadtest", timeout=1800).check_returncode()
        self.stack.docker.compose.build(services=["tune-plots"], quiet=True)

    def start_database(self) -> tuple[int, int, int]:
        """Start the throwaway PostgreSQL alone and read its limits: the
        connection budget is the server's, read before any candidate is
        chosen (serving/budget.py's query)."""
        self.write_overlay()
        self.log("starting the database and reading its connection limits")
        self.stack.docker.compose.up(services=["db"], detach=True, quiet=True, remove_orphans=True)
        self._ids["db"] = self.stack.docker.compose.ps(services=["db"])[0].id
        deadline = time.monotonic() + DATABASE_WAIT_S
        while True:
            result = self._docker_exec("db", ["psql", "-U", "app", "-d", "app", "-tAF", ",", "-c", LIMITS], 30)
            if result.returncode == 0:
                values = result.stdout.decode().strip().split(",")
                return int(values[0]), int(values[1]), int(values[2])
            if time.monotonic() > deadline:
                raise LabError(f"the database did not accept connections: {result.stderr.decode()[-300:]}")
            time.sleep(1)

    def add(self, candidates: list[Candidate]) -> None:
        """Start these candidates beside the running ones, wait until each
        answers through its nginx."""
        new = [c for c in candidates if c not in self.candidates]
        if not new:
            return
        self.candidates += new
        self.configs = tuple(config_for(c, self.settings.database) for c in self.candidates)
        self.write_overlay()
        services = [s for c in new for s in config_for(c, self.settings.database).all_services()]
        self.log(f"starting {len(new)} candidate(s): {', '.join(c.key for c in new)}")
        started = time.monotonic()
        self._start(list(dict.fromkeys(services)))
        self._find_cgroup_cpu_files(services)
        self._find_local_app_servers()
        self.wait_ready()
        if self.settings.database and not self._migrated:
            # The schema the profile's database requests need, applied once,
            # as `make up` does (serving/migrate.py, the app's `flask db upgrade`), from the first candidate.
            self.exec(compose.service_names(new[0])["app"], ["python3", "-m", "serving.migrate"], timeout=120)
            self._migrated = True
        self.log(f"answering in {time.monotonic() - started:.0f} s")

    # --- one run -------------------------------------------------------------

    def run(self, config: Config, workload: Workload, rep: int) -> dict:
        self._database_cpu = None
        result = super().run(config, workload, rep)
        result["app_memory_mib"] = self.memory_mib(config.app_service)
        if self._database_cpu is not None:
            # The database works for the candidate: its CPU is the run's
            # own, not other work on this machine (bench/cpu.py's other_cpu).
            cores, over_window = self._database_cpu
            result["db_cpu"] = cores
            if result.get("other_cpu") is not None:
                result["other_cpu"] = round(max(0.0, result["other_cpu"] - over_window), 3)
        return result

    def snapshot(self, config: Config) -> Snapshot:
        snapshot = super().snapshot(config)
        if self.settings.database:
            snapshot.cpu_ns["db"] = self.cpu_ns("db")
        return snapshot

    def _run_locust(self, config: Config, workload: Workload) -> tuple[dict, Snapshot, Snapshot, float]:
        result, before, after, load_seconds = super()._run_locust(config, workload)
        if self.settings.shape and result["seconds"]:
            # A shape's load lasts until the tune stops it, or until it ends
            # itself: its seconds are the span of its requests.
            load_seconds = result["seconds"]
        a, b = before.cpu_ns.get("db"), after.cpu_ns.get("db")
        if a is not None and b is not None:
            used = (b - a) / 1e9
            self._database_cpu = (round(used / load_seconds, 3), used / (after.at - before.at))
        return result, before, after, load_seconds

    def locust(self, config: Config, workload: Workload, seconds: int, spawn_seconds: int) -> dict:
        command = locust_command(self.settings, seconds, spawn_seconds)
        result = self._docker_exec(
            config.generator, command, timeout=bound_seconds(seconds, spawn_seconds) + STOP_S + 60
        )
        stopped = stopped_by_us(result.returncode, result.stderr.decode(errors="replace"))
        stats = parse_stats(result.stdout.decode(errors="replace"))
        figures = generators.summarize_locust(stats, workload.concurrency, seconds)
        figures["stopped"] = stopped
        planned = seconds + spawn_seconds
        if ended_early(self.settings.shape, stopped, figures["seconds"], planned):
            # Measured for as long as it ran: its requests over its seconds.
            figures["ended_early_s"] = round(figures["seconds"], 1)
        return figures

    def check_locustfile(self) -> None:
        """Stop the tune before any candidate starts, with one line, when the
        profile's locustfile cannot run: `locust --list` in a throwaway
        container of the load test's image, without a network."""
        s = self.settings
        # The overlay first: the tear-down after this check's refusal reads it.
        self.write_overlay()
        result = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp"]
            + ["--user", compose.generator_user(), "--entrypoint", "locust"]
            + ["-v", f"{s.locustfile.parent}:{compose.PROFILE_MOUNT}:ro", compose.LOADTEST_IMAGE]
            + ["-f", f"{compose.PROFILE_MOUNT}/{s.locustfile.name}", "--list"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 125:
            # docker's own failure (no image, no daemon), not the locustfile's.
            raise LabError(f"the load test's image did not start: {result.stderr.strip()[-500:]}")
        if problem := locustfile_problem(result.returncode, result.stdout, result.stderr):
            raise TuneError(f"TUNE_LOCUSTFILE={s.shown_locustfile} {problem}")

    def memory_mib(self, service: str) -> float | None:
        result = self._docker_exec(service, ["sh", "-c", _MEMORY_INSIDE], 30)
        text = result.stdout.decode().strip()
        return round(int(text) / 2**20, 1) if result.returncode == 0 and text.isdigit() else None
