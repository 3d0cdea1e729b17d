"""What the lab measures: the serving configurations, the workloads, and the
two profiles (quick for CI, full for the docs).

Everything a configuration is made of lives in bench/compose.yml; this module
names the services the lab drives, the URL the generator aims at and how to
describe the configuration in the results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Worker processes (gunicorn, uWSGI) and Werkzeug's processes=N: the same
#: budget everywhere the comparison needs it. 3 is also what the project's
#: default (2 x CPUs + 1) gives a one-CPU container.
WORKERS = 3
#: Threads per gthread worker (the project's default) and per uWSGI process.
THREADS = 4
#: gevent: greenlets per worker (gunicorn's worker_connections, uWSGI's --gevent).
GREENLETS = 1000
#: CPUs each app server container may use (Compose `cpus:`), the same for all.
APP_CPUS = 2.0
#: gevent's database pool per worker (serving/settings.py's default): what
#: bounds a database-bound endpoint, not the greenlets.
GEVENT_DATABASE_POOL = 10
#: Each class's database pool per worker (serving/settings.py's defaults).
DATABASE_POOL = {"sync": 1, "gthread": THREADS, "gevent": GEVENT_DATABASE_POOL}
#: The workload on the database (bench/compose.yml's `db`, PostgreSQL): only
#: the project's own nginx → gunicorn configurations run it.
DATABASE_WORKLOAD = "db"
#: A static file from nginx's disk (docs/static.md), against /healthz through
#: gunicorn on the same nginx: only nginx → gunicorn gthread runs it.
STATIC_WORKLOAD = "static"
STATIC_PATH = "/static/demo.css"


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    family: str  # dev | gunicorn | nginx+gunicorn | apache+gunicorn | nginx+uwsgi | granian | nginx+granian | host-port
    #: Service whose container the generator runs in.
    generator: str
    #: The URL base, as the generator sees it.
    base_url: str
    #: The app server's service (per-worker load is read there) and, when
    #: there is one, the proxy's.
    app_service: str
    front_service: str | None
    settings: str
    #: Whether the app server's workers are the children of its PID 1
    #: (gunicorn's arbiter, uWSGI's master): per-worker load is read from them.
    has_workers: bool = True
    #: The workloads this configuration runs (None: all of them).
    workloads: tuple[str, ...] | None = None
    #: Services that must be up for this configuration.
    services: tuple[str, ...] = field(default=())
    #: Database connections in all its pools (workers x pool per worker),
    #: for the configurations that run the database workload; 0: none.
    database_connections: int = 0
    #: Whether its nginx serves the app's static files (the static workload).
    serves_static: bool = False
    #: Whether the quick mode (CI's check of the lab) runs it: one of several
    #: configurations that differ only in the worker class is enough there.
    quick: bool = True
    #: Configurations its ratios are measured against, in the same pass:
    #: selecting it (--configs) selects them too.
    partners: tuple[str, ...] = ()

    def runs(self, workload: str) -> bool:
        if workload == DATABASE_WORKLOAD:
            return self.database_connections > 0
        if workload == STATIC_WORKLOAD:
            return self.serves_static
        return self.workloads is None or workload in self.workloads

    def all_services(self) -> tuple[str, ...]:
        own = (self.generator, self.app_service) + ((self.front_service,) if self.front_service else ())
        return tuple(dict.fromkeys(own + self.services))


def _dev(key: str, port: int, label: str, settings: str) -> Config:
    return Config(
        key=key,
        label=label,
        family="dev",
        generator="loadgen-local",
        base_url=f"http://127.0.0.1:{port}",
        app_service=key,
        front_service=None,
        settings=settings,
        has_workers=False,
    )


def _gunicorn(worker_class: str, per_worker: str) -> list[Config]:
    settings = (
        f"gunicorn {worker_class}, {WORKERS} workers{per_worker}, project defaults otherwise "
        "(log level warning: at either level nothing is logged per request)"
    )
    return [
        Config(
            key=f"gunicorn-{worker_class}",
            label=f"gunicorn {worker_class} (direct)",
            family="gunicorn",
            generator="loadgen",
            base_url=f"http://gunicorn-{worker_class}:8000",
            app_service=f"gunicorn-{worker_class}",
            front_service=None,
            settings=settings,
            # The mixed scenario is about the stack as deployed.
            workloads=("fast", "io", "cpu"),
        ),
        Config(
            key=f"nginx-{worker_class}",
            label=f"nginx → gunicorn {worker_class}",
            family="nginx+gunicorn",
            generator="loadgen",
            base_url=f"http://nginx-{worker_class}:8080",
            app_service=f"gunicorn-{worker_class}",
            front_service=f"nginx-{worker_class}",
            settings=f"the project's nginx → {settings}",
            services=("db",),
            database_connections=WORKERS
            * {"sync": 1, "gthread": THREADS, "gevent": GEVENT_DATABASE_POOL}[worker_class],
            serves_static=worker_class == "gthread",
        ),
    ]


def _apache(worker_class: str, per_worker: str) -> Config:
    """Apache httpd in front of the same gunicorn as nginx-{worker_class}
    (bench/apache/httpd.conf), on the same network, where gunicorn answers
    to `app`."""
    return Config(
        key=f"apache-{worker_class}",
        label=f"Apache → gunicorn {worker_class}",
        family="apache+gunicorn",
        generator="loadgen",
        base_url=f"http://apache-{worker_class}:8080",
        app_service=f"gunicorn-{worker_class}",
        front_service=f"apache-{worker_class}",
        settings=f"Apache httpd 2.4, event MPM (4 processes × 256 threads), mod_proxy_http with a pooled "
        f"keep-alive connection per thread, the project's nginx timeouts and limits (bench/apache/httpd.conf) → "
        f"the same gunicorn as nginx → gunicorn {worker_class} ({WORKERS} workers{per_worker})",
        workloads=("fast", "io", "cpu", "mix"),
        # One is enough for CI to know the image builds and serves: the
        # three differ only in the gunicorn behind them.
        quick=worker_class == "gthread",
        partners=(f"nginx-{worker_class}",),
    )


def _uwsgi(key: str, label: str, settings: str) -> Config:
    return Config(
        key=f"nginx-{key}",
        label=label,
        family="nginx+uwsgi",
        generator="loadgen",
        base_url=f"http://nginx-{key}:8080",
        app_service=key,
        front_service=f"nginx-{key}",
        settings=settings,
    )


def _granian() -> list[Config]:
    settings = (
        f"Granian (Rust HTTP server), WSGI interface, {WORKERS} workers × {THREADS} blocking threads "
        "(the threads that run the app), HTTP/1.1, backlog 2048, log level warning"
    )
    return [
        Config(
            key="granian",
            label="Granian (direct)",
            family="granian",
            generator="loadgen",
            base_url="http://granian:8000",
            app_service="granian",
            front_service=None,
            settings=settings,
            workloads=("fast", "io", "cpu"),
        ),
        Config(
            key="nginx-granian",
            label="nginx → Granian",
            family="nginx+granian",
            generator="loadgen",
            base_url="http://nginx-granian:8080",
            app_service="granian",
            front_service="nginx-granian",
            settings=f"the project's nginx (unchanged: Granian speaks HTTP as gunicorn does) → {settings}",
        ),
    ]


_SYNC, _GTHREAD, _GEVENT = (
    _gunicorn("sync", ""),
    _gunicorn("gthread", f" × {THREADS} threads"),
    _gunicorn("gevent", f" × {GREENLETS} greenlets"),
)

CONFIGS: tuple[Config, ...] = (
    _dev(
        "dev-single",
        5001,
        "dev server threaded=False",
        "app.run(threaded=False): Werkzeug, one process, one request at a time, HTTP/1.0, Connection: close",
    ),
    _dev(
        "dev-threaded",
        5002,
        "dev server threaded=True",
        "app.run(threaded=True): Werkzeug, a new thread per connection, HTTP/1.1, but every answer says "
        "Connection: close, so in effect a thread per request",
    ),
    _dev(
        "dev-processes",
        5003,
        f"dev server processes={WORKERS}",
        f"app.run(threaded=False, processes={WORKERS}): Werkzeug, a forked process per connection, "
        f"at most {WORKERS} at once; it answers with Connection: close, so in effect a fork per request",
    ),
    _SYNC[0],
    _GTHREAD[0],
    _GEVENT[0],
    _SYNC[1],
    _GTHREAD[1],
    _GEVENT[1],
    _apache("sync", ""),
    _apache("gthread", f" × {THREADS} threads"),
    _apache("gevent", f" × {GREENLETS} greenlets"),
    Config(
        key="nginx-gthread-reuseport",
        label="nginx → gunicorn gthread, reuse_port",
        family="nginx+gunicorn",
        generator="loadgen",
        base_url="http://nginx-gthread-reuseport:8080",
        app_service="gunicorn-gthread-reuseport",
        front_service="nginx-gthread-reuseport",
        settings=f"as nginx → gunicorn gthread, plus gunicorn's reuse_port (each of the {WORKERS} workers "
        "listens on its own SO_REUSEPORT socket; the kernel spreads new connections over them)",
        workloads=("fast", "cpu", "mix"),
    ),
    Config(
        key="nginx-gthread-stock",
        label="nginx → gunicorn gthread, stock class",
        family="nginx+gunicorn",
        generator="loadgen",
        base_url="http://nginx-gthread-stock:8080",
        app_service="gunicorn-gthread-stock",
        front_service="nginx-gthread-stock",
        settings="as nginx → gunicorn gthread, but with gunicorn's own gthread class (GUNICORN_STOCK_WORKERS=true): "
        "each worker accepts every connection it can hold and queues their requests first come, first served",
        # Where the project's class differs from it: the fast path's cost,
        # overload (io: 500 clients on 12 threads), the balance in the mix.
        workloads=("fast", "io", "mix"),
    ),
    *(
        Config(
            key=f"nginx-{worker_class}-unix",
            label=f"nginx → gunicorn {worker_class} via unix socket",
            family="nginx+gunicorn",
            generator="loadgen",
            base_url=f"http://nginx-{worker_class}-unix:8080",
            # The same gunicorn as nginx-{worker_class}, which also binds the socket.
            app_service=f"gunicorn-{worker_class}",
            front_service=f"nginx-{worker_class}-unix",
            settings=f"as nginx → gunicorn {worker_class} (the same gunicorn), but nginx reaches it through a unix "
            "socket on a volume both containers mount, instead of TCP across the container network",
            # Where the proxy's own cost shows (fast), and where many
            # connections wait (io); CPU-bound work is the app's.
            workloads=("fast", "io"),
        )
        for worker_class in ("gthread", "gevent")
    ),
    Config(
        key="nginx-gthread-tls",
        label="nginx → gunicorn gthread, HTTPS",
        family="nginx+gunicorn",
        generator="loadgen",
        base_url="https://nginx-gthread-tls:8443",
        # The same gunicorn as nginx-gthread: only the front differs.
        app_service="gunicorn-gthread",
        front_service="nginx-gthread-tls",
        settings="as nginx → gunicorn gthread (the same gunicorn), with the project's HTTPS mode on (docs/tls.md, "
        "a throwaway ECDSA P-256 certificate made at lab start): wrk speaks HTTP/1.1 over TLS 1.3 on keep-alive "
        "connections, without verifying the certificate",
        # What TLS costs per request. On io and cpu gthread is bounded by its
        # threads and by the app's CPU, which TLS does not change; in the mix
        # (fixed offered load) the latency would be mostly locust's own TLS
        # work in Python, on the same two cores.
        workloads=("fast",),
    ),
    _uwsgi(
        "uwsgi-threads",
        "nginx → uWSGI threads",
        f"nginx (uwsgi_pass) → uWSGI, master, {WORKERS} processes × {THREADS} threads, "
        "lazy-apps, listen 1024, as uwsgi-nginx-flask runs it",
    ),
    _uwsgi(
        "uwsgi-gevent",
        "nginx → uWSGI gevent",
        f"nginx (uwsgi_pass) → uWSGI, master, {WORKERS} processes × gevent {GREENLETS}, "
        "monkey-patched, lazy-apps, listen 1024",
    ),
    *_granian(),
    Config(
        key="hostport-gthread",
        label="nginx → gunicorn gthread via host port",
        family="host-port",
        generator="loadgen-host",
        # Filled in by the lab once Docker has picked the port.
        base_url="http://127.0.0.1:{port}",
        app_service="gunicorn-gthread",
        front_service="nginx-gthread",
        settings="as nginx → gunicorn gthread, but loaded from the host's network namespace through the "
        "port Docker publishes on 127.0.0.1 (docker-proxy)",
        workloads=("fast", "io"),
    ),
)

CONFIGS_BY_KEY = {config.key: config for config in CONFIGS}


def configs_named(names: list[str]) -> tuple[tuple[Config, ...], tuple[str, ...], list[str]]:
    """The configurations `--configs` names, in the matrix's order; the keys
    of those selected only as partners; and the names that match nothing. A
    name is a configuration's key, a family (`apache+gunicorn`) or a front,
    the family's first part (`apache`); each configuration brings its
    partners, whose runs its ratios pair with."""
    wanted, unknown = set(), []
    for name in names:
        matched = {
            c.key for c in CONFIGS if name in (c.key, c.family) or ("+" in c.family and c.family.split("+")[0] == name)
        }
        if not matched:
            unknown.append(name)
        wanted |= matched
    partners = {partner for key in wanted for partner in CONFIGS_BY_KEY[key].partners} - wanted
    return (
        tuple(c for c in CONFIGS if c.key in wanted | partners),
        tuple(c.key for c in CONFIGS if c.key in partners),
        unknown,
    )


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    tool: str  # wrk | locust
    path: str
    #: wrk: open connections; locust: users.
    concurrency: int
    description: str
    #: Requests/s if the server never queued (concurrency / service time), if
    #: that is meaningful for the workload.
    ideal_rps: float | None = None
    #: locust: [[path, weight], ...] and the think time range in seconds.
    mix: tuple[tuple[str, int], ...] = ()
    think: tuple[float, float] = (0.0, 0.0)


IO_MS = 100
CPU_MS = 20
#: Milliseconds each database request waits inside PostgreSQL (pg_sleep).
DB_MS = 100
MIX = (("/healthz", 70), (f"/work/io?ms={IO_MS}", 25), (f"/work/cpu?ms={CPU_MS}", 5))


def workloads(quick: bool) -> tuple[Workload, ...]:
    fast_c, io_c, cpu_c, users = (32, 200, 8, 50) if quick else (64, 500, 16, 200)
    db_c = 32 if quick else 64
    return (
        Workload(
            "fast",
            "fast JSON",
            "wrk",
            "/healthz",
            fast_c,
            f"GET /healthz (a small JSON body), {fast_c} keep-alive connections",
        ),
        Workload(
            "io",
            f"I/O-bound {IO_MS} ms",
            "wrk",
            f"/work/io?ms={IO_MS}",
            io_c,
            f"GET /work/io?ms={IO_MS} (sleeps {IO_MS} ms), {io_c} connections",
            ideal_rps=io_c / (IO_MS / 1000),
        ),
        Workload(
            "cpu",
            f"CPU-bound {CPU_MS} ms",
            "wrk",
            f"/work/cpu?ms={CPU_MS}",
            cpu_c,
            f"GET /work/cpu?ms={CPU_MS} (burns {CPU_MS} ms of CPU in Python), {cpu_c} connections",
        ),
        Workload(
            "mix",
            "mixed (locust)",
            "locust",
            "",
            users,
            f"locust, {users} users, 0.5-1 s think time; per request: "
            + ", ".join(f"{weight} % {path}" for path, weight in MIX),
            mix=MIX,
            think=(0.5, 1.0),
        ),
        Workload(
            DATABASE_WORKLOAD,
            f"database-bound {DB_MS} ms",
            "wrk",
            f"/db/sleep?ms={DB_MS}",
            db_c,
            f"GET /db/sleep?ms={DB_MS} (waits {DB_MS} ms inside PostgreSQL, on a pooled connection), "
            f"{db_c} connections; the project's nginx → gunicorn only",
        ),
        Workload(
            STATIC_WORKLOAD,
            "static file",
            "wrk",
            STATIC_PATH,
            fast_c,
            f"GET {STATIC_PATH} (the demo stylesheet, uncompressed: wrk asks for no gzip) from nginx's disk, "
            f"never gunicorn, {fast_c} keep-alive connections; nginx → gunicorn gthread's nginx only, "
            "beside its fast JSON",
        ),
    )


@dataclass(frozen=True)
class Profile:
    name: str
    repetitions: int
    duration: float
    warmup: float
    quick: bool


QUICK = Profile("quick", repetitions=1, duration=1.0, warmup=0.3, quick=True)
FULL = Profile("full", repetitions=3, duration=4.0, warmup=1.0, quick=False)
