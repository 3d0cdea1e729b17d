"""Every setting of the server that runs the app, in this one place.

`VARIABLES` below is the single source of truth for each variable's name, its
default and its bounds; the app's own settings are demo/config.py's. The
README's table, `.env.example` and the app's pass-through list in
`docker-compose.yml` are checked against both by
tests/unit/test_settings_docs.py. Bad values raise SettingsError with one line
that names the variable and what it accepts, so that the container stops at
once instead of serving with a configuration nobody asked for. A process
reads them once (`current()`).

Plain dataclasses and parsers, not pydantic-settings: importing it costs
about as much CPU as the gunicorn master's whole configuration does today
(measured side by side with farm-bench), and it would be paid by every
process that reads a setting, the container's health check every few
seconds among them.

Two values come from outside, because they are other programs' settings:
nginx's `proxy_read_timeout` and the app's Compose `stop_grace_period`. The
compose file writes each once (a YAML anchor) and hands it both to the program
that owns it and to this container (NGINX_PROXY_READ_TIMEOUT,
APP_STOP_GRACE_PERIOD); gunicorn's timeouts are bounded by them here. Where
they are absent (gunicorn run by hand, with no nginx or Docker around it),
nothing bounds them.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

WORKER_CLASSES = ("sync", "gthread", "gevent")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")


class SettingsError(ValueError):
    """An environment variable holds a value the app must not start with."""


# --- parsers: raw string -> value, or SettingsError naming the variable -------


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    allowed = f"a whole number >= {minimum}" if maximum is None else f"a whole number from {minimum} to {maximum}"

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not valid: expected {allowed}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise SettingsError(f"{name}={raw!r} is out of range: expected {allowed}")
        return value

    return parse


def _choice(choices: tuple[str, ...], hint: str = "") -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name}={raw!r} is not valid: expected one of {', '.join(choices)}{hint}")
        return raw

    return parse


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not valid: expected true or false")


def _bind(name: str, raw: str) -> str:
    if raw.startswith("unix:"):
        if len(raw) > len("unix:"):
            return raw
    else:
        host, sep, port = raw.rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return raw
    raise SettingsError(f"{name}={raw!r} is not valid: expected HOST:PORT (e.g. 0.0.0.0:8000) or unix:PATH")


def _text(name: str, raw: str) -> str:
    return raw


def _absolute_path(name: str, raw: str) -> str:
    if not raw.startswith("/"):
        raise SettingsError(f"{name}={raw!r} is not valid: expected an absolute path, such as /srv/static")
    return raw


def _seconds(name: str, raw: str) -> int:
    """A Compose or nginx duration in whole seconds: 45, 45s, 1m."""
    match = re.fullmatch(r"(\d+)(s|m)?", raw)
    if not match:
        raise SettingsError(f"{name}={raw!r} is not valid: expected a duration in seconds (45s) or minutes (1m)")
    return int(match[1]) * (60 if match[2] == "m" else 1)


def _networks(name: str, raw: str) -> str:
    """gunicorn's forwarded_allow_ips: `*`, or addresses and networks,
    comma-separated. gunicorn's own error would not name the variable."""
    if raw.strip() == "*":
        return raw
    for item in (part.strip() for part in raw.split(",")):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is not valid: {item!r} is not an address or network; "
                "expected addresses or CIDRs, comma-separated (10.0.0.2,192.168.0.0/16), or *"
            ) from None
    return raw


#: nginx/conf.d/app.conf's upstream `keepalive_timeout`, s (a unit test reads
#: it there): how long nginx keeps an idle connection to gunicorn.
NGINX_UPSTREAM_KEEPALIVE_TIMEOUT = 60


#: gunicorn's own form of naming the app: `module:variable` or `module:factory(literal args)`.
_APP_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\(.*\))?")


def _app_module(name: str, raw: str) -> str:
    if not _APP_MODULE.fullmatch(raw):
        raise SettingsError(
            f"{name}={raw!r} is not valid: expected module:variable or module:factory() "
            "(gunicorn's form, e.g. myapp:create_app())"
        )
    return raw


#: What a mount's prefix may be: one or more path segments, no trailing slash.
_MOUNT_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")
#: What names the app to mount: a module and an attribute, as gunicorn names its app.
_MOUNT_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
#: Paths the root app and nginx own, for every mounted app alike: a mount
#: there would hide them.
RESERVED_PREFIXES = ("/healthz", "/readyz", "/static")


def _mounts(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """`/PREFIX=module:attribute`, comma-separated: the WSGI apps mounted
    beside the app (serving/dispatch.py), in the order written."""
    mounts: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        prefix, sep, target = (side.strip() for side in item.partition("="))
        if not sep or not _MOUNT_PREFIX.fullmatch(prefix) or not _MOUNT_TARGET.fullmatch(target):
            raise SettingsError(
                f"{name}: {item!r} is not valid: expected /PREFIX=module:attribute "
                "(e.g. /admin=demo.admin:application), comma-separated"
            )
        if any(prefix == reserved or prefix.startswith(reserved + "/") for reserved in RESERVED_PREFIXES):
            raise SettingsError(f"{name}: {prefix} is reserved: {', '.join(RESERVED_PREFIXES)} stay the root app's")
        if prefix in mounts:
            raise SettingsError(f"{name}: {prefix} is mounted twice")
        mounts[prefix] = target
    return tuple(mounts.items())


# --- the table ----------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """One environment variable. `default` is a value, or a function of the
    values read before it (the worker count follows the CPUs); `documented`
    is how the README and .env.example write the default."""

    name: str
    field: str
    parse: Callable[[str, str], object]
    default: object
    documented: str
    meaning: str
    #: Whether docker-compose.yml passes it to the app container.
    compose: bool = True
    #: Whether it is one of gunicorn's settings (under `field`, its name).
    gunicorn: bool = True


def _default_workers(values: Mapping[str, object]) -> int:
    # gunicorn's own advice: (2 x cores) + 1, so that one worker can run while
    # another waits on I/O. Cores the container may use, not the host's.
    return 2 * int(values["cpus"]) + 1


def _default_threads(values: Mapping[str, object]) -> int:
    return 4 if values["worker_class"] == "gthread" else 1


#: A gevent worker's database pool when nothing says otherwise: its greenlets
#: (GUNICORN_WORKER_CONNECTIONS, 1000) would be far too many connections, so
#: the pool, not the greenlets, bounds what a database-bound endpoint runs at
#: once, and the rest wait DATABASE_POOL_TIMEOUT at most (docs/database.md).
GEVENT_DATABASE_POOL = 10


def _default_pool(values: Mapping[str, object]) -> int:
    # One connection for each request a worker runs at once, so that none waits for one.
    return {"sync": 1, "gthread": int(values["threads"]), "gevent": GEVENT_DATABASE_POOL}[str(values["worker_class"])]


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "APP_MODULE",
        "app_module",
        _app_module,
        "demo.wsgi:application",
        "`demo.wsgi:application`",
        "the WSGI app to serve, in gunicorn's form: `module:variable` or `module:factory()` "
        "(`myapp:create_app()`); the default is the demonstration app",
        gunicorn=False,
    ),
    Variable(
        "SECRET_KEY_FILE",
        "secret_key_file",
        _text,
        "",
        "none",
        "file holding the app's `SECRET_KEY` (a Compose secret, `secrets/secret_key`, made by `make up`), which "
        "the server puts in the `SECRET_KEY` the app reads from its environment (docs/security.md)",
        compose=False,
        gunicorn=False,
    ),
    Variable(
        "DATABASE_PASSWORD_FILE",
        "database_password_file",
        _text,
        "",
        "none",
        "file holding the database's password (a Compose secret, `secrets/db_password`, made by `make up`), which "
        "the server hands to libpq (`PGPASSFILE`): the app's `DATABASE_URL` carries no password (docs/database.md)",
        compose=False,
        gunicorn=False,
    ),
    Variable(
        "WORKER_CLASS",
        "worker_class",
        _choice(WORKER_CLASSES, " (eventlet was removed in gunicorn 26; tornado is not served by this project)"),
        "sync",
        "`sync`",
        "`sync`, `gthread` or `gevent`",
    ),
    Variable(
        "WEB_CONCURRENCY",
        "workers",
        _integer(1, 256),
        _default_workers,
        "2 × CPUs + 1",
        "worker processes; CPUs the container may use (its CPU limit), not the host's",
    ),
    Variable(
        "GUNICORN_THREADS",
        "threads",
        _integer(1, 1024),
        _default_threads,
        "`4` (gthread), `1`",
        "threads per gthread worker; refused with other classes",
    ),
    Variable(
        "GUNICORN_WORKER_CONNECTIONS",
        "worker_connections",
        _integer(1, 100_000),
        1000,
        "`1000`",
        "requests in progress per gevent worker, connections per gthread worker",
    ),
    Variable(
        "GUNICORN_TIMEOUT",
        "timeout",
        _integer(1),
        30,
        "`30`",
        "worker heartbeat timeout, s; below nginx's `proxy_read_timeout`",
    ),
    Variable(
        "GUNICORN_GRACEFUL_TIMEOUT",
        "graceful_timeout",
        _integer(1),
        30,
        "`30`",
        "time to finish requests on shutdown, s; below the app's `stop_grace_period`",
    ),
    Variable(
        "GUNICORN_KEEPALIVE",
        "keepalive",
        _integer(0, 3600),
        75,
        "`75`",
        # nginx, not gunicorn, must close an idle kept-alive connection:
        # otherwise nginx can send a request down a connection being closed.
        "idle keep-alive from nginx, s; above nginx's upstream `keepalive_timeout` (60)",
    ),
    Variable(
        "GUNICORN_MAX_REQUESTS",
        "max_requests",
        _integer(0),
        0,
        "`0`",
        "recycle a worker after this many requests (0: never)",
    ),
    Variable(
        "GUNICORN_MAX_REQUESTS_JITTER",
        "max_requests_jitter",
        _integer(0),
        0,
        "`0`",
        "up to this many more requests before the recycle, so workers do not all restart at once",
    ),
    Variable(
        "GUNICORN_LOG_LEVEL",
        "loglevel",
        _choice(LOG_LEVELS),
        "info",
        "`info`",
        "gunicorn's log level",
    ),
    Variable(
        "GUNICORN_ACCESS_LOG",
        "accesslog",
        _boolean,
        False,
        "`false`",
        "gunicorn access log (nginx already logs every request, with upstream timings)",
    ),
    Variable(
        "LOG_FORMAT",
        "log_format",
        _choice(LOG_FORMATS),
        "json",
        "`json`",
        "`json`: one JSON object a line (gunicorn, its access log, the app), with the request id; "
        "`text`: gunicorn's plain lines",
        gunicorn=False,
    ),
    Variable(
        "METRICS_PORT",
        "metrics_port",
        _integer(0, 65535),
        9100,
        "`9100`",
        "Prometheus metrics, from a process of their own inside the container (never through nginx); "
        "`0`: off. Not passed by Compose: Prometheus scrapes `app:9100` (monitoring/prometheus/prometheus.yml)",
        compose=False,
        gunicorn=False,
    ),
    Variable(
        "GUNICORN_BIND",
        "bind",
        _bind,
        "0.0.0.0:8000",
        "`0.0.0.0:8000`",
        "`HOST:PORT` or `unix:PATH`; not passed by Compose, since nginx proxies to `app:8000`",
        compose=False,
    ),
    Variable(
        "FORWARDED_ALLOW_IPS",
        "forwarded_allow_ips",
        _networks,
        "127.0.0.1,::1",
        "`127.0.0.1,::1`",
        "addresses gunicorn itself trusts for `X-Forwarded-Proto`: none but loopback, since ProxyFix applies "
        "nginx's (docs/tls.md)",
    ),
    Variable(
        "GUNICORN_STOCK_WORKERS",
        "stock_workers",
        _boolean,
        False,
        "`false`",
        # The escape hatch for the day a gunicorn or gevent upgrade breaks
        # what the project's worker classes rely on (serving/internals.py).
        "`true`: gunicorn's own gthread and gevent classes instead of the project's balanced ones "
        "(docs/concurrency.md)",
        gunicorn=False,
    ),
    Variable(
        "STATIC_PUBLISH_DIR",
        "static_publish_dir",
        _absolute_path,
        "",
        "none",
        "where the app copies its static files for nginx when it starts: docker-compose.yml sets the volume both "
        "mount (docs/static.md); none: not copied",
        compose=False,
        gunicorn=False,
    ),
    Variable(
        "APP_MOUNTS",
        "app_mounts",
        _mounts,
        (),
        "none",
        "other WSGI apps the same workers serve under path prefixes, `/PREFIX=module:attribute` comma-separated "
        "(application dispatching, docs/concurrency.md); none: the app alone, nothing in between",
        gunicorn=False,
    ),
    Variable(
        "DATABASE_POOL_SIZE",
        "database_pool_size",
        _integer(1, 1000),
        _default_pool,
        "`1` (sync), `GUNICORN_THREADS` (gthread), `10` (gevent)",
        # The server sizes the app's pool: it knows what one worker runs at
        # once. It hands the value to the app in the workers' environment.
        "database connections per worker, never more (no overflow): the connection budget, docs/database.md",
        gunicorn=False,
    ),
    Variable(
        "DATABASE_POOL_TIMEOUT",
        "database_pool_timeout",
        _integer(1, 20),
        5,
        "`5`",
        "longest a request waits for a free database connection before a JSON 503, s; below `GUNICORN_TIMEOUT`",
        gunicorn=False,
    ),
    Variable(
        "DATABASE_CONNECT_TIMEOUT",
        "database_connect_timeout",
        _integer(1, 20),
        3,
        "`3`",
        "longest a connection to the database may take to open, s (libpq's `PGCONNECT_TIMEOUT`)",
        gunicorn=False,
    ),
    Variable(
        "DATABASE_RESERVED_CONNECTIONS",
        "database_reserved_connections",
        _integer(0, 10_000),
        5,
        "`5`",
        "connections the budget leaves to the database's other clients: migrations, psql, monitoring",
        gunicorn=False,
    ),
)

#: Set by the compose file, not by users: the outside ends of the timeout budget.
BUDGET: tuple[Variable, ...] = (
    Variable(
        "NGINX_PROXY_READ_TIMEOUT",
        "proxy_read_timeout",
        _seconds,
        None,
        "",
        "",
    ),
    Variable(
        "APP_STOP_GRACE_PERIOD",
        "stop_grace_period",
        _seconds,
        None,
        "",
        "",
    ),
)


@dataclass(frozen=True)
class Settings:
    app_module: str
    secret_key_file: str
    database_password_file: str
    worker_class: str
    workers: int
    threads: int
    worker_connections: int
    timeout: int
    graceful_timeout: int
    keepalive: int
    max_requests: int
    max_requests_jitter: int
    loglevel: str
    accesslog: bool
    log_format: str
    metrics_port: int
    bind: str
    forwarded_allow_ips: str
    stock_workers: bool
    static_publish_dir: str
    app_mounts: tuple[tuple[str, str], ...]
    database_pool_size: int
    database_pool_timeout: int
    database_connect_timeout: int
    database_reserved_connections: int

    @property
    def max_concurrent_requests(self) -> int:
        return max_concurrent_requests(self.worker_class, self.workers, self.threads, self.worker_connections)

    @property
    def database_connections(self) -> int:
        """The most connections one replica's workers open, with a database."""
        return self.workers * self.database_pool_size

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "app_mounts": dict(self.app_mounts),
            "max_concurrent_requests": self.max_concurrent_requests,
            "database_connections_per_replica": self.database_connections,
        }


def max_concurrent_requests(worker_class: str, workers: int, threads: int, worker_connections: int) -> int:
    """How many requests the whole server works on at once, by design: one
    per sync worker, `threads` per gthread worker, and up to
    `worker_connections` requests in progress per gevent worker."""
    per_worker = {"sync": 1, "gthread": threads, "gevent": worker_connections}[worker_class]
    return workers * per_worker


# --- CPU quota -------------------------------------------------------------


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU limit the cgroup imposes (`docker run --cpus`, Compose `cpus:`),
    in CPUs, or None when there is none. cgroup v2 first, then v1."""
    cpu_max = root / "cpu.max"
    if cpu_max.is_file():
        quota, _, period = cpu_max.read_text().strip().partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if quota_file.is_file() and period_file.is_file():
        quota = int(quota_file.read_text())
        if quota <= 0:
            return None
        return quota / int(period_file.read_text())
    return None


def available_cpus(
    cpu_limit: Callable[[], float | None] = cgroup_cpu_limit,
    affinity: Callable[[], int] = lambda: len(os.sched_getaffinity(0)),
) -> int:
    """CPUs this container may really use: the smaller of its CPU set and its
    CPU quota (rounded up), never less than one. os.cpu_count() would give
    the host's count, which a limited container cannot use."""
    cpus = affinity()
    limit = cpu_limit()
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


# --- loading ---------------------------------------------------------------


def _read(variables: tuple[Variable, ...], env: Mapping[str, str], values: dict[str, object]) -> None:
    for variable in variables:
        raw = env.get(variable.name, "").strip()
        if raw:
            values[variable.field] = variable.parse(variable.name, raw)
        else:
            default = variable.default
            values[variable.field] = default(values) if callable(default) else default


def _check_combinations(values: Mapping[str, object]) -> None:
    if values["worker_class"] != "gthread" and values["threads"] != 1:
        # gunicorn silently turns sync into gthread when threads > 1, and gevent
        # ignores threads: either way the class asked for is not what runs.
        raise SettingsError(
            f"GUNICORN_THREADS={values['threads']} only applies to WORKER_CLASS=gthread "
            f"(WORKER_CLASS is {values['worker_class']}): unset it or switch the class"
        )
    # nginx must outlast gunicorn's worker timeout, so that gunicorn kills a
    # stuck worker before nginx gives up on it; Docker must wait out the
    # graceful shutdown before it sends SIGKILL.
    for name, field, outer, outer_name in (
        ("GUNICORN_TIMEOUT", "timeout", "proxy_read_timeout", "nginx's proxy_read_timeout"),
        ("GUNICORN_GRACEFUL_TIMEOUT", "graceful_timeout", "stop_grace_period", "the app's stop_grace_period"),
    ):
        if values[outer] is not None and values[field] >= values[outer]:  # type: ignore[operator]
            raise SettingsError(
                f"{name}={values[field]} is out of range: expected below {outer_name} ({values[outer]} s)"
            )
    # Behind this project's nginx (which hands over its proxy_read_timeout),
    # nginx, never gunicorn, must close an idle kept-alive connection: a
    # request nginx sends down a connection gunicorn is closing fails with a
    # 502. 0 turns gunicorn's keep-alive off, which is safe.
    if values["proxy_read_timeout"] is not None and 0 < values["keepalive"] <= NGINX_UPSTREAM_KEEPALIVE_TIMEOUT:  # type: ignore[operator]
        raise SettingsError(
            f"GUNICORN_KEEPALIVE={values['keepalive']} is out of range: expected above nginx's upstream "
            f"keepalive_timeout ({NGINX_UPSTREAM_KEEPALIVE_TIMEOUT} s), or 0 for none"
        )
    # The metrics server listens beside gunicorn, on all interfaces.
    bind = str(values["bind"])
    if (
        values["metrics_port"]
        and not bind.startswith("unix:")
        and bind.rpartition(":")[2] == str(values["metrics_port"])
    ):
        raise SettingsError(
            f"METRICS_PORT={values['metrics_port']} is the port gunicorn binds (GUNICORN_BIND={values['bind']}): "
            "choose another, or 0 to turn metrics off"
        )
    if values["max_requests_jitter"] and not values["max_requests"]:
        raise SettingsError(
            f"GUNICORN_MAX_REQUESTS_JITTER={values['max_requests_jitter']} needs GUNICORN_MAX_REQUESTS > 0"
        )


def load(env: Mapping[str, str] | None = None, cpus: int | None = None) -> Settings:
    """Read and check every setting. `cpus` defaults to available_cpus()."""
    env = os.environ if env is None else env
    values: dict[str, object] = {"cpus": available_cpus() if cpus is None else cpus}
    _read(BUDGET, env, values)
    _read(VARIABLES, env, values)
    _check_combinations(values)
    return Settings(**{variable.field: values[variable.field] for variable in VARIABLES})


_current: Settings | None = None


def current() -> Settings:
    """This process's settings, read from its environment the first time and
    kept: the container's command reads them, gunicorn's config and the
    workers (forked from it) find them here, never reading them again."""
    global _current
    if _current is None:
        _current = load()
    return _current


def read(name: str, env: Mapping[str, str] | None = None) -> object:
    """One variable alone, checked as load() checks it, for a process that
    needs nothing else (the health check needs only GUNICORN_BIND)."""
    env = os.environ if env is None else env
    (variable,) = (v for v in VARIABLES if v.name == name)
    values: dict[str, object] = {}
    _read((variable,), env, values)
    return values[variable.field]


def gunicorn_options(settings: Settings) -> dict[str, object]:
    """The settings that are gunicorn's, under gunicorn's own names and types."""
    options = {v.field: getattr(settings, v.field) for v in VARIABLES if v.gunicorn}
    options["bind"] = [settings.bind]
    options["accesslog"] = "-" if settings.accesslog else None
    return options
