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
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import trustme
from python_on_whales import Container

from bench import cpu, generators
from bench.cpu import Snapshot
from bench.matrix import APP_CPUS, THREADS, WORKERS, Config, Profile, Workload
from harness.stack import REPO, Stack

BENCH_COMPOSE = REPO / "bench" / "compose.yml"
PROJECT = "flask-concurrency-bench"
#: Where each lab project's throwaway certificate and key are made at start
#: (git-ignored), for its HTTPS configuration's nginx (BENCH_TLS_DIR).
TLS_ROOT = REPO / ".cache" / "bench-tls"
#: A server still draining an earlier run's queue must answer within this.
DRAIN_TIMEOUT_S = 120

# Over https the probes, like wrk and locust, do not verify the lab's
# throwaway certificate.
_READY = r"""
import ssl, sys, time, urllib.request
context = ssl._create_unverified_context()
deadline = time.monotonic() + float(sys.argv[1])
pending = list(sys.argv[2:])
while pending:
    url = pending[0]
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
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
import ssl, sys, urllib.request
context = ssl._create_unverified_context()
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]), context=context) as response:
    response.read()
    assert response.status == 200, response.status
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
        session: str = "",
    ) -> None:
        self.profile = profile
        #: The lab session (its start), stamped on every run.
        self.session = session
        self.configs = configs
        self.workloads = workloads
        self.log = log
        self.tls_dir = TLS_ROOT / project
        self.stack = _bench_stack(project, gunicorn_args, app_cpus, self.tls_dir)
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
        self.log(
            "building the project's images (app, nginx, db) and the lab's (loadgen, peers, nginx variants, Apache)"
        )
        compose.build(services=["app", "nginx", "db"], quiet=True)
        # Images shared by several services are built by one of them (the
        # services with `build: !reset null` reuse it): the build that
        # makes each image, and every service that runs it.
        images = {
            "loadgen": ("loadgen",),
            "uwsgi-threads": ("uwsgi-threads", "uwsgi-gevent", "granian"),
            "nginx-uwsgi-threads": ("nginx-uwsgi-threads", "nginx-uwsgi-gevent"),
            "nginx-gthread-unix": ("nginx-gthread-unix", "nginx-gevent-unix"),
            "apache-sync": ("apache-sync", "apache-gthread", "apache-gevent"),
        }
        wanted = set(self.services()) | {"loadgen"}
        compose.build(services=[b for b, users in images.items() if wanted & set(users)], quiet=True)

    def up(self) -> None:
        services = self.services()
        self.log(f"starting {len(services)} containers: {', '.join(services)}")
        started = time.monotonic()
        tls_hosts = [urlsplit(c.base_url).hostname for c in self.configs if c.base_url.startswith("https:")]
        if tls_hosts:
            write_tls_files(self.tls_dir, tls_hosts)
        self._start(services)
        self._find_cgroup_cpu_files(services)
        self._find_local_app_servers()
        self.host_port = self._published_port(services)
        self.wait_ready()
        self.log(f"all up and answering in {time.monotonic() - started:.0f} s")

    def _start(self, services: list[str]) -> None:
        """Start the containers and learn their ids."""
        self.stack.docker.compose.up(
            # Not --wait: Compose refuses to wait on containers whose health
            # check is disabled. wait_ready() waits for what matters.
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

    def _find_cgroup_cpu_files(self, services: list[str]) -> None:
        """The containers' CPU counters this machine can read directly (the
        fast path: see cpu.container_cpu_ns)."""
        for service in services:
            cpu_file = cpu.cgroup_cpu_file(self.inspect(service).state.pid)
            if cpu_file is not None:
                self._cpu_files[service] = cpu_file

    def _find_local_app_servers(self) -> None:
        """The app servers whose workers this machine's /proc shows."""
        for config in self.configs:
            if config.has_workers and config.app_service not in self._host_pids:
                pid = self.inspect(config.app_service).state.pid
                if cpu.is_local_server(pid):
                    self._host_pids[config.app_service] = pid

    def _published_port(self, services: list[str]) -> int | None:
        """The host port of the "via host port" configuration's nginx."""
        if "nginx-gthread" not in services:
            return None
        bindings = self.inspect("nginx-gthread").network_settings.ports.get("8080/tcp") or []
        return int(bindings[0]["HostPort"]) if bindings else None

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
        shutil.rmtree(self.tls_dir, ignore_errors=True)

    # --- helpers -------------------------------------------------------------

    def container_id(self, service: str) -> str:
        return self._ids[service]

    def inspect(self, service: str) -> Container:
        return self.stack.docker.container.inspect(self.container_id(service))

    def exec(self, service: str, args: list[str], timeout: float, stdin: bytes | None = None) -> bytes:
        """stdout of `docker exec` in the service's container; LabError when
        the command fails. Bytes, as the plots come back as a tar archive."""
        result = self._docker_exec(service, args, timeout, stdin)
        if result.returncode != 0:
            raise LabError(
                f"{service}: {shlex.join(args)[:200]} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()[-800:]}"
            )
        return result.stdout

    def _docker_exec(
        self, service: str, args: list[str], timeout: float, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        interactive = ["-i"] if stdin is not None else []
        return subprocess.run(
            ["docker", "exec", *interactive, self.container_id(service), *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

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
            effective = self._effective_settings(config.app_service)
            if effective is not None:
                entry["effective"] = effective
            if config.family == "apache+gunicorn":
                entry["front_effective"] = self._apache_settings(config.front_service)
            described[config.key] = entry
        return described

    def _effective_settings(self, service: str) -> dict | None:
        if service.startswith("gunicorn-"):
            return self._gunicorn_settings(service)
        if service.startswith("uwsgi-"):
            return {k: v for k, v in self._environment(service).items() if k.startswith("UWSGI_")}
        if service == "granian":
            return {k: v for k, v in self._environment(service).items() if k.startswith("GRANIAN_")}
        # A development server: its command line says everything.
        return {"command": shlex.join(self.inspect(service).config.cmd)}

    def _apache_settings(self, service: str) -> dict:
        """Apache as it reports itself (`httpd -V`: version and MPM; `httpd
        -M`: the modules loaded), and the MPM, keep-alive and proxy lines of
        the configuration it runs."""
        version = self.exec(service, ["httpd", "-V"], timeout=30).decode()
        modules = self.exec(service, ["httpd", "-M"], timeout=30).decode()
        conf = self._read(service, "/usr/local/apache2/conf/httpd.conf")
        return apache_settings(version, modules, conf)

    def _gunicorn_settings(self, service: str) -> dict | None:
        """What gunicorn logged as its effective configuration, plus the
        extra options the lab handed it (--gunicorn-args); None if it logged
        nothing."""
        logs = self.stack.docker.compose.logs(services=[service], no_log_prefix=True)
        lines = [line for line in logs.splitlines() if '"event": "gunicorn.config"' in line]
        if not lines:
            return None
        effective = json.loads(lines[-1])
        effective.pop("event", None)
        extra = self._environment(service).get("GUNICORN_CMD_ARGS", "").strip()
        if extra:
            effective["GUNICORN_CMD_ARGS"] = extra
        return effective

    def _environment(self, service: str) -> dict[str, str]:
        return {name: value for name, _, value in (e.partition("=") for e in self.inspect(service).config.env or [])}

    def isolation(self) -> dict[str, dict]:
        """For each development server: how it is networked, what it
        publishes, and which interfaces its network namespace has."""
        return {config.key: self._isolation_of(config) for config in self.configs if config.family == "dev"}

    def _isolation_of(self, config: Config) -> dict:
        inspected = self.inspect(config.app_service)
        networks = inspected.network_settings.networks or {}
        port = int(config.base_url.rsplit(":", 1)[1])
        return {
            "network_mode": inspected.host_config.network_mode,
            "shares_namespace_of": config.generator,
            "holder_network_mode": self.inspect(config.generator).host_config.network_mode,
            "networks": sorted(networks.keys()),
            "port_bindings": {k: v for k, v in (inspected.host_config.port_bindings or {}).items() if v},
            "published_ports": {k: v for k, v in (inspected.network_settings.ports or {}).items() if v},
            "interfaces": self._interfaces(config.app_service),
            "listening": _listening(self._read(config.app_service, "/proc/net/tcp", "/proc/net/tcp6")),
            # The same port on this machine's loopback: nothing may answer.
            "reachable_from_host": _connects("127.0.0.1", port),
            "addresses": sorted(n.ip_address for n in networks.values() if n.ip_address),
        }

    def _interfaces(self, service: str) -> list[str]:
        """The network interfaces in the service's namespace (/proc/net/dev)."""
        lines = self._read(service, "/proc/net/dev").splitlines()[2:]
        return sorted(line.split(":")[0].strip() for line in lines if ":" in line)

    def _read(self, service: str, *paths: str) -> str:
        return self.exec(service, ["cat", *paths], timeout=30).decode()

    # --- one run -------------------------------------------------------------

    def run(self, config: Config, workload: Workload, rep: int) -> dict:
        drain = self._drain_if_backlogged(config)
        if workload.tool == "wrk":
            result, before, after, load_seconds = self._run_wrk(config, workload)
        else:
            result, before, after, load_seconds = self._run_locust(config, workload)
        result.update(
            session=self.session,
            rep=rep,
            config=config.key,
            workload=workload.key,
            tool=workload.tool,
            drain_s=round(drain, 3),
            started_at=time.time(),
            **cpu.measure(config, before, after, load_seconds, result["requests"]),
        )
        result["errors_total"] = sum(result["errors"].values())
        if workload.tool == "wrk":
            result["served_share"] = served_share(result, workload.concurrency)
        # Clients that gave up (the run's end) may have left requests queued:
        # the server's next run first waits until it answers again.
        if workload.tool == "locust" or result.get("served_share", 1.0) < 0.95 or result["errors_total"]:
            self._backlogged.add(config.app_service)
        return result

    def _drain_if_backlogged(self, config: Config) -> float:
        """Seconds waited for the server to answer again (0 if it had no
        reason not to): an overloaded earlier run can leave it a queue of
        requests whose clients have gone."""
        if config.app_service not in self._backlogged:
            return 0.0
        started = time.monotonic()
        # Not enough alone: the probe may travel on a connection nginx kept
        # alive, which the project's gthread worker serves in turn with the
        # connections still waiting to be accepted; so until no connection
        # waits in the app server's listen queue either.
        while _accept_queued(self._read(config.app_service, "/proc/net/tcp", "/proc/net/tcp6")):
            if time.monotonic() - started > DRAIN_TIMEOUT_S:
                raise LabError(
                    f"{config.app_service}: connections still waiting to be accepted after {DRAIN_TIMEOUT_S} s"
                )
            time.sleep(0.5)
        self.exec(
            config.generator,
            ["python3", "-c", _PROBE, self.url(config, "/healthz"), str(DRAIN_TIMEOUT_S)],
            timeout=DRAIN_TIMEOUT_S + 30,
        )
        self._backlogged.discard(config.app_service)
        return time.monotonic() - started

    def _run_wrk(self, config: Config, workload: Workload) -> tuple[dict, Snapshot, Snapshot, float]:
        """A warm-up, then the measured run between two snapshots; the
        figures, the snapshots and the seconds the load lasted."""
        warmup = round(self.profile.warmup)
        if warmup > 0:
            # Few connections, so that an overloaded server is not left a
            # long queue of abandoned requests just before it is measured.
            self.wrk(config, workload, min(4, workload.concurrency), warmup)
        before = self.snapshot(config)
        result = self.wrk(config, workload, workload.concurrency, self._seconds())
        after = self.snapshot(config)
        return result, before, after, result["seconds"]

    def _run_locust(self, config: Config, workload: Workload) -> tuple[dict, Snapshot, Snapshot, float]:
        """The measured run, its users spawned over the warm-up (at least 1 s)."""
        seconds, spawn = self._seconds(), max(1, round(self.profile.warmup))
        before = self.snapshot(config)
        result = self.locust(config, workload, seconds, spawn)
        after = self.snapshot(config)
        return result, before, after, seconds + spawn

    def _seconds(self) -> int:
        return max(1, round(self.profile.duration))

    def wrk(self, config: Config, workload: Workload, connections: int, seconds: int) -> dict:
        command = generators.wrk_command(self.url(config, workload.path), connections, seconds)
        out = self.exec(config.generator, command, timeout=seconds + 60).decode()
        result = generators.parse_wrk(out, connections)
        if result is None:
            raise LabError(f"wrk printed no result: {out[-500:]}")
        return result

    def locust(self, config: Config, workload: Workload, seconds: int, spawn_seconds: int) -> dict:
        command = generators.locust_command(self.url(config, ""), workload, seconds, spawn_seconds)
        result = self._docker_exec(config.generator, command, timeout=seconds + spawn_seconds + 60)
        # locust exits 1 when a request failed; the figures say how many.
        if result.returncode not in (0, 1):
            raise LabError(f"locust exited {result.returncode}: {result.stderr.decode(errors='replace')[-800:]}")
        return generators.summarize_locust(json.loads(result.stdout.decode()), workload.concurrency, seconds)

    # --- CPU ------------------------------------------------------------------

    def cpu_ns(self, service: str) -> int | None:
        return cpu.container_cpu_ns(self.stack.docker, self.container_id(service), self._cpu_files.get(service))

    def snapshot(self, config: Config) -> Snapshot:
        """Every counter a run's CPU figures come from, read at once: the
        slow ones (docker exec) in threads, the /proc ones meanwhile."""
        services = [config.generator, config.app_service] + ([config.front_service] if config.front_service else [])
        with ThreadPoolExecutor(max_workers=len(services) + 1) as pool:
            cpu_futures = {s: pool.submit(self.cpu_ns, s) for s in services}
            host_pid = self._host_pids.get(config.app_service)
            inside = None
            if config.has_workers and host_pid is None:
                inside = pool.submit(self.exec, config.app_service, ["python3", "-c", cpu.WORKER_TICKS_INSIDE], 30)
            at = time.monotonic()
            host = cpu.host_busy_seconds()
            ticks, hz = None, os.sysconf("SC_CLK_TCK")
            if host_pid is not None:
                ticks = cpu.children_ticks(host_pid)
            cpu_ns = {s: f.result() for s, f in cpu_futures.items()}
            if inside is not None:
                data = json.loads(inside.result())
                ticks, hz = data["ticks"], data["hz"]
        return Snapshot(at=at, cpu_ns=cpu_ns, worker_ticks=ticks, hz=hz, host_busy=host)


def _bench_stack(project: str, gunicorn_args: str, app_cpus: float, tls_dir: Path) -> Stack:
    """The Compose project holding every configuration (docker-compose.yml
    with bench/compose.yml over it, `bench` profile)."""
    return Stack(
        "bench",
        overlays=(BENCH_COMPOSE,),
        profiles=("bench",),
        project=project,
        test_images=False,
        BENCH_WORKERS=str(WORKERS),
        BENCH_THREADS=str(THREADS),
        BENCH_APP_CPUS=str(app_cpus),
        # Extra gunicorn options for every gunicorn configuration (to try
        # a setting before changing serving/gunicorn_conf.py).
        BENCH_GUNICORN_CMD_ARGS=gunicorn_args,
        # The HTTPS configuration's certificate and key (write_tls_files).
        BENCH_TLS_DIR=str(tls_dir),
    )


def write_tls_files(directory: Path, hosts: list[str]) -> None:
    """A throwaway CA's certificate for the hosts, as the project's nginx
    reads it: cert.pem (the chain) and key.pem, readable by nginx's uid 101
    through the bind mount. Made anew at each start, under .cache/ (never
    committed), removed with the lab."""
    leaf = trustme.CA().issue_cert(*hosts)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    files = {
        "cert.pem": b"".join(pem.bytes() for pem in leaf.cert_chain_pems),
        "key.pem": leaf.private_key_pem.bytes(),
    }
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o644)


#: The directives of bench/apache/httpd.conf the lab reports, beside httpd -V.
APACHE_DIRECTIVES = (
    "StartServers",
    "ServerLimit",
    "ThreadsPerChild",
    "MaxRequestWorkers",
    "KeepAliveTimeout",
    "RequestReadTimeout",
    "ProxyPass",
)


def apache_settings(version: str, modules: str, conf: str) -> dict:
    """`httpd -V`'s version and MPM, the shared modules `httpd -M` lists,
    and the configuration's values of APACHE_DIRECTIVES."""
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in version.splitlines()) if v}
    settings: dict[str, object] = {"version": fields.get("Server version", "?"), "mpm": fields.get("Server MPM", "?")}
    for line in conf.splitlines():
        name, _, value = line.strip().partition(" ")
        if name in APACHE_DIRECTIVES:
            settings[name] = value.strip()
    settings["modules"] = sorted(line.split()[0] for line in modules.splitlines() if line.strip().endswith("(shared)"))
    return settings


def served_share(result: dict, connections: int) -> float:
    """Little's law: requests in progress on average, over the connections
    the generator had open. Far below 1 means many connections waited the
    whole run without an answer."""
    in_progress = result["rps"] * result["latency_ms"]["mean"] / 1000
    return min(1.0, in_progress / connections)


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


def _accept_queued(proc_net_tcp: str) -> int:
    """Connections waiting in the LISTEN sockets' accept queues (their rx_queue
    column in /proc/net/tcp{,6} text)."""
    queued = 0
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[3] == "0A" and ":" in fields[4]:
            queued += int(fields[4].split(":")[1], 16)
    return queued


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def interrupt_on_sigterm() -> None:
    """SIGTERM (CI cancelling, `kill`) tears down like Ctrl-C does: raised
    as KeyboardInterrupt (the lab's and make tune's main loops)."""

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)


def tear_down(lab: Lab) -> None:
    """lab.down(), with Ctrl-C and SIGTERM ignored meanwhile: a second one
    while tearing down would leave containers behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        lab.down()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
