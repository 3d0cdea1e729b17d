"""The lab itself: bring the configurations up, run the matrix, take them down.

One Compose project (flask-concurrency-bench: docker-compose.yml with
bench/compose.yml over it, `bench` profile) holds every configuration at
once; idle servers cost nothing measurable, so the runs can be interleaved
across configurations. Each run is bounded in time and connections, and aims
only at the lab's own containers: from the generator containers inside the
lab's networks, or (the port-publishing measurement) at 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import cpu
from bench.cpu import Snapshot
from bench.matrix import APP_CPUS, THREADS, WORKERS, Config, Profile, Workload
from harness.stack import REPO, Stack

BENCH_COMPOSE = REPO / "bench" / "compose.yml"
PROJECT = "flask-concurrency-bench"
#: wrk's threads: one per core of this 2-core reference machine, which is
#: what its docs advise.
WRK_THREADS = 2
#: Slowest answer a run records. Longer than any run, so that wrk records
#: every answer it gets (it drops slower ones into a "timeout" count).
WRK_TIMEOUT_S = 60
#: A server still draining an earlier run's queue must answer within this.
DRAIN_TIMEOUT_S = 120

_READY = r"""
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
pending = list(sys.argv[2:])
while pending:
    url = pending[0]
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
            if response.status == 200:
                pending.pop(0)
                continue
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("not answering: " + " ".join(pending))
    time.sleep(0.2)
"""

_PROBE = r"""
import sys, time, urllib.request
started = time.monotonic()
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as response:
    response.read()
    assert response.status == 200, response.status
print(time.monotonic() - started)
"""


class LabError(RuntimeError):
    pass


class Lab:
    def __init__(
        self,
        profile: Profile,
        configs: tuple[Config, ...],
        workloads: tuple[Workload, ...],
        log: Callable[[str], None] = print,
        gunicorn_args: str = "",
        app_cpus: float = APP_CPUS,
        project: str = PROJECT,
    ) -> None:
        self.profile = profile
        self.configs = configs
        self.workloads = workloads
        self.log = log
        self.stack = Stack(
            "bench",
            overlays=(BENCH_COMPOSE,),
            profiles=("bench",),
            project=project,
            BENCH_WORKERS=str(WORKERS),
            BENCH_THREADS=str(THREADS),
            BENCH_APP_CPUS=str(app_cpus),
            # Extra gunicorn options for every gunicorn configuration (to try
            # a setting before changing app/gunicorn_conf.py).
            BENCH_GUNICORN_CMD_ARGS=gunicorn_args,
        )
        self.app_cpus = app_cpus
        self._ids: dict[str, str] = {}
        #: App servers' PID 1 as this machine sees it, when the engine runs
        #: here: their workers' CPU is then read from /proc directly, which
        #: is much quicker than a `docker exec` per snapshot.
        self._host_pids: dict[str, int] = {}
        #: Each container's cgroup CPU counter, when readable here.
        self._cpu_files: dict[str, Path] = {}
        #: App servers that may still be working off an earlier run's queue.
        self._backlogged: set[str] = set()
        self.host_port: int | None = None

    # --- lifecycle -----------------------------------------------------------

    def services(self) -> list[str]:
        return list(dict.fromkeys(s for config in self.configs for s in config.all_services()))

    def build(self) -> None:
        compose = self.stack.docker.compose
        # The project's own images first: the uWSGI peer's nginx is built FROM
        # the project's nginx image.
        self.log("building the project's images (app, nginx) and the lab's (loadgen, uWSGI, nginx for uWSGI)")
        compose.build(services=["app", "nginx"], quiet=True)
        own = [s for s in ("loadgen", "uwsgi-threads", "nginx-uwsgi-threads") if s in self.services() or s == "loadgen"]
        compose.build(services=own, quiet=True)

    def up(self) -> None:
        services = self.services()
        self.log(f"starting {len(services)} containers: {', '.join(services)}")
        started = time.monotonic()
        self.stack.docker.compose.up(
            # Not --wait: Compose refuses to wait on containers whose health
            # check is disabled. wait_ready() below waits for what matters.
            services=services,
            detach=True,
            quiet=True,
            remove_orphans=True,
        )
        for container in self.stack.docker.compose.ps():
            service = container.config.labels.get("com.docker.compose.service")
            self._ids[service] = container.id
        missing = [s for s in services if s not in self._ids]
        if missing:
            raise LabError(f"not started: {', '.join(missing)}")
        for service in services:
            pid = self.stack.docker.container.inspect(self._ids[service]).state.pid
            cpu_file = cpu.cgroup_cpu_file(pid)
            if cpu_file is not None:
                self._cpu_files[service] = cpu_file
        for config in self.configs:
            if config.has_workers and config.app_service not in self._host_pids:
                pid = self.stack.docker.container.inspect(self._ids[config.app_service]).state.pid
                if cpu.is_local_server(pid):
                    self._host_pids[config.app_service] = pid
        if "nginx-gthread" in services:
            ports = self.stack.docker.container.inspect(self._ids["nginx-gthread"]).network_settings.ports
            bindings = ports.get("8080/tcp") or []
            self.host_port = int(bindings[0]["HostPort"]) if bindings else None
        self.wait_ready()
        self.log(f"all up and answering in {time.monotonic() - started:.0f} s")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until every configuration answers GET /healthz 200 from its own
        generator (the lab runs no Docker health checks: see compose.yml)."""
        by_generator: dict[str, list[str]] = {}
        for config in self.configs:
            by_generator.setdefault(config.generator, []).append(self.url(config, "/healthz"))
        for generator, urls in by_generator.items():
            self.exec(generator, ["python3", "-c", _READY, str(timeout), *urls], timeout=timeout + 30)

    def down(self) -> None:
        self.log("removing the lab's containers and networks")
        self.stack.docker.compose.down(remove_orphans=True, volumes=True, timeout=5, quiet=True)

    # --- helpers -------------------------------------------------------------

    def container_id(self, service: str) -> str:
        return self._ids[service]

    def exec(self, service: str, args: list[str], timeout: float, stdin: bytes | None = None) -> bytes:
        interactive = ["-i"] if stdin is not None else []
        result = subprocess.run(
            ["docker", "exec", *interactive, self.container_id(service), *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(
                f"{service}: {shlex.join(args)[:200]} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()[-800:]}"
            )
        return result.stdout

    def url(self, config: Config, path: str) -> str:
        base = config.base_url
        if "{port}" in base:
            if self.host_port is None:
                raise LabError("nginx-gthread has no published port")
            base = base.format(port=self.host_port)
        return base + path

    # --- what is known about each configuration -----------------------------

    def describe(self) -> dict[str, dict]:
        """Per configuration: its settings as the servers report them."""
        described = {}
        for config in self.configs:
            entry: dict[str, object] = {"settings": config.settings, "app_cpus": self.app_cpus}
            if config.app_service.startswith("gunicorn-"):
                logs = self.stack.docker.compose.logs(services=[config.app_service], no_log_prefix=True)
                lines = [line for line in logs.splitlines() if '"event": "gunicorn.config"' in line]
                if lines:
                    effective = json.loads(lines[-1])
                    effective.pop("event", None)
                    env = self.stack.docker.container.inspect(self.container_id(config.app_service)).config.env
                    extra = next((e.split("=", 1)[1] for e in env if e.startswith("GUNICORN_CMD_ARGS=")), "")
                    if extra.strip():
                        effective["GUNICORN_CMD_ARGS"] = extra.strip()
                    entry["effective"] = effective
            elif config.app_service.startswith("uwsgi-"):
                env = self.stack.docker.container.inspect(self.container_id(config.app_service)).config.env
                entry["effective"] = dict(e.split("=", 1) for e in env if e.startswith("UWSGI_"))
            else:
                cmd = self.stack.docker.container.inspect(self.container_id(config.app_service)).config.cmd
                entry["effective"] = {"command": shlex.join(cmd)}
            described[config.key] = entry
        return described

    def isolation(self) -> dict[str, dict]:
        """For each development server: how it is networked, what it
        publishes, and which interfaces its network namespace has."""
        report = {}
        for config in self.configs:
            if config.family != "dev":
                continue
            inspected = self.stack.docker.container.inspect(self.container_id(config.app_service))
            holder = self.stack.docker.container.inspect(self.container_id(config.generator))
            interfaces = self.exec(config.app_service, ["cat", "/proc/net/dev"], timeout=30).decode()
            names = sorted(line.split(":")[0].strip() for line in interfaces.splitlines()[2:] if ":" in line)
            listening = self.exec(config.app_service, ["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=30).decode()
            port = int(config.base_url.rsplit(":", 1)[1])
            report[config.key] = {
                "network_mode": inspected.host_config.network_mode,
                "shares_namespace_of": config.generator,
                "holder_network_mode": holder.host_config.network_mode,
                "networks": sorted((inspected.network_settings.networks or {}).keys()),
                "port_bindings": {k: v for k, v in (inspected.host_config.port_bindings or {}).items() if v},
                "published_ports": {k: v for k, v in (inspected.network_settings.ports or {}).items() if v},
                "interfaces": names,
                "listening": _listening(listening),
                # The same port on this machine's loopback: nothing may answer.
                "reachable_from_host": _connects("127.0.0.1", port),
                "addresses": sorted(
                    n.ip_address for n in (inspected.network_settings.networks or {}).values() if n.ip_address
                ),
            }
        return report

    # --- one run -------------------------------------------------------------

    def drain(self, config: Config) -> float:
        """Wait until the server answers again: an overloaded earlier run can
        leave it a queue of requests whose clients have gone."""
        out = self.exec(
            config.generator,
            ["python3", "-c", _PROBE, self.url(config, "/healthz"), str(DRAIN_TIMEOUT_S)],
            timeout=DRAIN_TIMEOUT_S + 30,
        )
        return float(out.decode().strip())

    def cpu_ns(self, service: str) -> int | None:
        return cpu.container_cpu_ns(self.stack.docker, self.container_id(service), self._cpu_files.get(service))

    def snapshot(self, config: Config) -> Snapshot:
        services = [config.generator, config.app_service] + ([config.front_service] if config.front_service else [])
        with ThreadPoolExecutor(max_workers=len(services) + 1) as pool:
            cpu_futures = {s: pool.submit(self.cpu_ns, s) for s in services}
            host_pid = self._host_pids.get(config.app_service)
            workers = None
            if config.has_workers and host_pid is None:
                workers = pool.submit(self.exec, config.app_service, ["python3", "-c", cpu.WORKER_TICKS_INSIDE], 30)
            at = time.monotonic()
            host = cpu.host_busy_seconds()
            ticks, hz = None, os.sysconf("SC_CLK_TCK")
            if host_pid is not None:
                ticks = cpu.children_ticks(host_pid)
            cpu_ns = {s: f.result() for s, f in cpu_futures.items()}
            if workers is not None:
                data = json.loads(workers.result())
                ticks, hz = data["ticks"], data["hz"]
        return Snapshot(at=at, cpu_ns=cpu_ns, worker_ticks=ticks, hz=hz, host_busy=host)

    def wrk(self, config: Config, workload: Workload, connections: int, seconds: int) -> dict:
        args = [
            "wrk",
            f"-t{min(WRK_THREADS, connections)}",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={WRK_TIMEOUT_S}s",
            "-s",
            "/opt/bench/report.lua",
            self.url(config, workload.path),
        ]
        out = self.exec(config.generator, args, timeout=seconds + 60).decode()
        match = re.search(r"^BENCH_JSON (.*)$", out, flags=re.MULTILINE)
        if not match:
            raise LabError(f"wrk printed no result: {out[-500:]}")
        raw = json.loads(match.group(1))
        errors = raw["errors"]
        latency = raw["latency_us"]
        seconds_run = raw["duration_us"] / 1e6
        return {
            "requests": raw["requests"],
            "seconds": seconds_run,
            "rps": raw["requests"] / seconds_run,
            "errors": errors,
            "latency_ms": {k: latency[k] / 1000 for k in ("p50", "p90", "p99", "p999", "max", "mean")},
            "connections": connections,
        }

    def locust(self, config: Config, workload: Workload, seconds: int, spawn_seconds: int) -> dict:
        users = workload.concurrency
        args = [
            "locust",
            "-f",
            "/opt/bench/mix_locustfile.py",
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            str(max(1, users // spawn_seconds)),
            "--run-time",
            f"{seconds + spawn_seconds}s",
            # The figures count from the moment every user is running.
            "--reset-stats",
            "--stop-timeout",
            "0",
            "--host",
            self.url(config, ""),
            "--json",
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        env = [
            "env",
            f"BENCH_MIX={json.dumps([list(m) for m in workload.mix])}",
            f"BENCH_THINK={workload.think[0]},{workload.think[1]}",
        ]
        result = subprocess.run(
            ["docker", "exec", self.container_id(config.generator), *env, *args],
            capture_output=True,
            timeout=seconds + spawn_seconds + 60,
            check=False,
        )
        # locust exits 1 when a request failed; the figures say how many.
        if result.returncode not in (0, 1):
            raise LabError(f"locust exited {result.returncode}: {result.stderr.decode(errors='replace')[-800:]}")
        stats = json.loads(result.stdout.decode())
        return summarize_locust(stats, users, seconds)

    def run(self, config: Config, workload: Workload, rep: int) -> dict:
        drain = 0.0
        if config.app_service in self._backlogged:
            drain = self.drain(config)
            self._backlogged.discard(config.app_service)
        seconds = max(1, round(self.profile.duration))
        warmup = round(self.profile.warmup)
        if workload.tool == "wrk":
            if warmup > 0:
                # Few connections, so that an overloaded server is not left a
                # long queue of abandoned requests just before it is measured.
                self.wrk(config, workload, min(4, workload.concurrency), warmup)
            before = self.snapshot(config)
            result = self.wrk(config, workload, workload.concurrency, seconds)
            after = self.snapshot(config)
            load_seconds = result["seconds"]
        else:
            spawn = max(1, warmup)
            before = self.snapshot(config)
            result = self.locust(config, workload, seconds, spawn)
            after = self.snapshot(config)
            load_seconds = seconds + spawn
        result.update(
            rep=rep,
            config=config.key,
            workload=workload.key,
            tool=workload.tool,
            drain_s=round(drain, 3),
            started_at=time.time(),
            **cpu.measure(config, before, after, load_seconds, result["requests"]),
        )
        errors = result["errors"]
        result["errors_total"] = sum(errors.values())
        # Little's law: requests in progress on average, over the
        # connections (users) the generator had open. Far below 1 means
        # many connections waited the whole run without an answer.
        if workload.tool == "wrk":
            in_progress = result["rps"] * result["latency_ms"]["mean"] / 1000
            result["served_share"] = min(1.0, in_progress / workload.concurrency)
        # Clients that gave up (the run's end) may have left requests queued:
        # the server's next run first waits until it answers again.
        if workload.tool == "locust" or result.get("served_share", 1.0) < 0.95 or result["errors_total"]:
            self._backlogged.add(config.app_service)
        return result


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _listening(proc_net_tcp: str) -> list[str]:
    """host:port of the LISTEN sockets in /proc/net/tcp{,6} text."""
    sockets = []
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A" or ":" not in fields[1]:
            continue
        address, port = fields[1].split(":")
        if len(address) == 8:
            host = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
        else:
            host = "::1" if address.endswith("01000000") and set(address[:24]) == {"0"} else f"[{address}]"
        sockets.append(f"{host}:{int(port, 16)}")
    return sorted(set(sockets))


def summarize_locust(stats: list[dict], users: int, seconds: int) -> dict:
    """wrk-like figures from locust's --json output (one entry per endpoint)."""
    requests = sum(s["num_requests"] for s in stats)
    failures = sum(s["num_failures"] for s in stats)
    histogram: dict[float, int] = {}
    for entry in stats:
        for ms, count in entry["response_times"].items():
            histogram[float(ms)] = histogram.get(float(ms), 0) + count
    if stats:
        span = max(s["last_request_timestamp"] or 0 for s in stats) - min(s["start_time"] for s in stats)
    else:
        span = 0
    span = span if span > 0 else float(seconds)
    total_time = sum(s["total_response_time"] for s in stats)
    per_endpoint = {
        s["name"]: {
            "requests": s["num_requests"],
            "failures": s["num_failures"],
            "p50_ms": _percentile({float(k): v for k, v in s["response_times"].items()}, 50),
            "p99_ms": _percentile({float(k): v for k, v in s["response_times"].items()}, 99),
        }
        for s in stats
    }
    return {
        "requests": requests,
        "seconds": span,
        "rps": requests / span,
        "errors": {"failures": failures},
        "latency_ms": {
            "p50": _percentile(histogram, 50),
            "p90": _percentile(histogram, 90),
            "p99": _percentile(histogram, 99),
            "p999": _percentile(histogram, 99.9),
            "max": max((s["max_response_time"] or 0 for s in stats), default=0),
            "mean": total_time / requests if requests else 0,
        },
        "connections": users,
        "endpoints": per_endpoint,
    }


def _percentile(histogram: dict[float, int], q: float) -> float:
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    rank = q / 100 * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
