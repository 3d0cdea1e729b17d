"""Gunicorn's settings, read from the environment in this one place.

Every setting is an environment variable with a documented default (the table
in README.md mirrors VARIABLES below). Bad values raise SettingsError with a
message that names the variable and what it accepts, so that the container
stops at once instead of serving with a configuration nobody asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

WORKER_CLASSES = ("sync", "gthread", "gevent")

#: nginx's proxy_read_timeout (nginx/snippets/proxy-to-app.conf) and Compose's
#: stop_grace_period for the app (docker-compose.yml). gunicorn's timeouts must
#: stay below them; tests/integration/test_timeout_budget.py fails if these
#: mirrors drift from the real files.
NGINX_PROXY_READ_TIMEOUT = 60
COMPOSE_STOP_GRACE_PERIOD = 45


class SettingsError(ValueError):
    """An environment variable holds a value gunicorn must not start with."""


@dataclass(frozen=True)
class Settings:
    worker_class: str
    workers: int
    threads: int
    worker_connections: int
    timeout: int
    graceful_timeout: int
    keepalive: int
    max_requests: int
    max_requests_jitter: int
    bind: str
    forwarded_allow_ips: str
    loglevel: str
    accesslog: bool

    @property
    def max_concurrent_requests(self) -> int:
        return max_concurrent_requests(self.worker_class, self.workers, self.threads, self.worker_connections)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "max_concurrent_requests": self.max_concurrent_requests}


def max_concurrent_requests(worker_class: str, workers: int, threads: int, worker_connections: int) -> int:
    """How many requests the whole server works on at once, by design: one
    per sync worker, `threads` per gthread worker, and up to
    `worker_connections` greenlets per gevent worker."""
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


def default_workers(cpus: int) -> int:
    # gunicorn's own advice: (2 x cores) + 1, so that one worker can run while
    # another waits on I/O.
    return 2 * cpus + 1


# --- parsing ---------------------------------------------------------------


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    allowed = f"a whole number >= {minimum}" if maximum is None else f"a whole number from {minimum} to {maximum}"
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not valid: expected {allowed}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise SettingsError(f"{name}={raw!r} is out of range: expected {allowed}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], hint: str = "") -> str:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not valid: expected one of {', '.join(choices)}{hint}")
    return raw


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not valid: expected true or false")


def _bind(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    if raw.startswith("unix:"):
        if len(raw) > len("unix:"):
            return raw
    else:
        host, sep, port = raw.rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return raw
    raise SettingsError(f"{name}={raw!r} is not valid: expected HOST:PORT (e.g. 0.0.0.0:8000) or unix:PATH")


def load(env: Mapping[str, str] | None = None, cpus: int | None = None) -> Settings:
    """Read and check every setting. `cpus` defaults to available_cpus()."""
    env = os.environ if env is None else env
    worker_class = _choice(
        env,
        "WORKER_CLASS",
        "sync",
        WORKER_CLASSES,
        hint=" (eventlet was removed in gunicorn 26; tornado is not served by this project)",
    )
    if cpus is None:
        cpus = available_cpus()
    workers = _integer(env, "WEB_CONCURRENCY", default_workers(cpus), minimum=1, maximum=256)
    threads = _integer(env, "GUNICORN_THREADS", 4 if worker_class == "gthread" else 1, minimum=1, maximum=1024)
    if worker_class != "gthread" and threads != 1:
        # gunicorn silently turns sync into gthread when threads > 1, and gevent
        # ignores threads: either way the class asked for is not what runs.
        raise SettingsError(
            f"GUNICORN_THREADS={threads} only applies to WORKER_CLASS=gthread "
            f"(WORKER_CLASS is {worker_class}): unset it or switch the class"
        )
    worker_connections = _integer(env, "GUNICORN_WORKER_CONNECTIONS", 1000, minimum=1, maximum=100_000)
    timeout = _integer(env, "GUNICORN_TIMEOUT", 30, minimum=1, maximum=NGINX_PROXY_READ_TIMEOUT - 1)
    graceful_timeout = _integer(env, "GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1, maximum=COMPOSE_STOP_GRACE_PERIOD - 1)
    # Longer than nginx's upstream keepalive_timeout (60 s, nginx/conf.d/app.conf), so that
    # nginx, not gunicorn, closes an idle kept-alive connection: otherwise
    # nginx can send a request down a connection gunicorn is closing.
    keepalive = _integer(env, "GUNICORN_KEEPALIVE", 75, minimum=0, maximum=3600)
    max_requests = _integer(env, "GUNICORN_MAX_REQUESTS", 0, minimum=0)
    max_requests_jitter = _integer(env, "GUNICORN_MAX_REQUESTS_JITTER", 0, minimum=0)
    if max_requests_jitter and not max_requests:
        raise SettingsError(f"GUNICORN_MAX_REQUESTS_JITTER={max_requests_jitter} needs GUNICORN_MAX_REQUESTS > 0")
    return Settings(
        worker_class=worker_class,
        workers=workers,
        threads=threads,
        worker_connections=worker_connections,
        timeout=timeout,
        graceful_timeout=graceful_timeout,
        keepalive=keepalive,
        max_requests=max_requests,
        max_requests_jitter=max_requests_jitter,
        bind=_bind(env, "GUNICORN_BIND", "0.0.0.0:8000"),
        forwarded_allow_ips=env.get("FORWARDED_ALLOW_IPS", "").strip() or "127.0.0.1,::1",
        loglevel=_choice(env, "GUNICORN_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")),
        accesslog=_boolean(env, "GUNICORN_ACCESS_LOG", False),
    )


def main() -> int:
    """`python -m app.settings`: check the environment and print the settings
    gunicorn would start with, as JSON; exit 2 with the reason otherwise.
    `make up` runs it first, so that a bad value fails fast."""
    import json
    import sys

    try:
        settings = load()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(settings.as_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
