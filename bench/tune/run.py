"""The lab, pointed at a tune's candidates: bench/lab.py's Lab with the
tune's generated overlay instead of bench/compose.yml, the load test's own
image and the profile's locustfile as the generator, the database's limits
read from the server before any candidate is chosen, and memory read beside
the lab's CPU figures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from bench import generators
from bench.cpu import Snapshot
from bench.lab import Lab, LabError
from bench.matrix import Config, Profile, Workload
from bench.tune import compose
from bench.tune.candidates import Candidate
from bench.tune.settings import TuneSettings
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
        "the locustfile's LoadTestShape"
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


def locust_command(settings: TuneSettings, seconds: int, spawn_seconds: int) -> list[str]:
    """locust in the load test's image, on the profile's locustfile, headless,
    its summary as JSON; bounded by the run time whatever the profile says."""
    command = [
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
        a, b = before.cpu_ns.get("db"), after.cpu_ns.get("db")
        if a is not None and b is not None:
            used = (b - a) / 1e9
            self._database_cpu = (round(used / load_seconds, 3), used / (after.at - before.at))
        return result, before, after, load_seconds

    def locust(self, config: Config, workload: Workload, seconds: int, spawn_seconds: int) -> dict:
        command = locust_command(self.settings, seconds, spawn_seconds)
        result = self._docker_exec(config.generator, command, timeout=seconds + spawn_seconds + 60)
        # locust exits 1 when a request failed or the locustfile's own
        # thresholds did; the figures say how.
        if result.returncode not in (0, 1):
            raise LabError(f"locust exited {result.returncode}: {result.stderr.decode(errors='replace')[-800:]}")
        stats = parse_stats(result.stdout.decode(errors="replace"))
        return generators.summarize_locust(stats, workload.concurrency, seconds)

    def memory_mib(self, service: str) -> float | None:
        result = self._docker_exec(service, ["sh", "-c", _MEMORY_INSIDE], 30)
        text = result.stdout.decode().strip()
        return round(int(text) / 2**20, 1) if result.returncode == 0 and text.isdigit() else None
