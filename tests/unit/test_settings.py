"""serving.settings: gunicorn's settings from the environment, and CPU sizing."""

from __future__ import annotations

import math
import re
import subprocess

import pytest

from serving import settings
from serving.settings import (
    VARIABLES,
    SettingsError,
    available_cpus,
    cgroup_cpu_limit,
    load,
)

pytestmark = pytest.mark.unit

#: The budget as the compose file hands it over (any values would do).
READ_TIMEOUT, GRACE = 60, 45
BUDGET = {"NGINX_PROXY_READ_TIMEOUT": f"{READ_TIMEOUT}s", "APP_STOP_GRACE_PERIOD": f"{GRACE}s"}


def rejected(env: dict[str, str], *fragments: str, cpus: int = 2) -> str:
    """load(env) must raise SettingsError whose message contains every fragment."""
    with pytest.raises(SettingsError) as info:
        load(env, cpus=cpus)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message
    return message


# --- defaults and overrides ---------------------------------------------------


@pytest.mark.parametrize("cpus", [1, 2, 4, 8])
def test_defaults(cpus):
    s = load({}, cpus=cpus)
    assert s.worker_class == "sync"
    assert s.workers == 2 * cpus + 1
    assert s.threads == 1
    assert s.worker_connections == 1000
    assert s.timeout == 30
    assert s.graceful_timeout == 30
    assert s.keepalive == 75
    assert s.max_requests == 0
    assert s.max_requests_jitter == 0
    assert s.bind == "0.0.0.0:8000"
    assert s.forwarded_allow_ips == "127.0.0.1,::1"
    assert s.loglevel == "info"
    assert s.accesslog is False
    assert s.log_format == "json"
    assert s.metrics_port == 9100
    assert s.stock_workers is False
    assert s.app_mounts == ()
    assert s.app_module == "demo.wsgi:application" and s.secret_key_file == ""


@pytest.mark.parametrize(("worker_class", "threads"), [("sync", 1), ("gthread", 4), ("gevent", 1)])
def test_default_threads_per_class(worker_class, threads):
    s = load({"WORKER_CLASS": worker_class}, cpus=2)
    assert s.worker_class == worker_class
    assert s.threads == threads
    assert s.workers == 5


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_worker_class_is_the_default(value):
    assert load({"WORKER_CLASS": value}, cpus=1).worker_class == "sync"


def test_empty_values_mean_defaults():
    env = {variable.name: "" for variable in VARIABLES}
    assert load(env, cpus=3) == load({}, cpus=3)


def test_every_variable_overrides():
    env = {
        "WORKER_CLASS": "gthread",
        "WEB_CONCURRENCY": "3",
        "GUNICORN_THREADS": "8",
        "GUNICORN_WORKER_CONNECTIONS": "250",
        "GUNICORN_TIMEOUT": "20",
        "GUNICORN_GRACEFUL_TIMEOUT": "10",
        "GUNICORN_KEEPALIVE": "5",
        "GUNICORN_MAX_REQUESTS": "1000",
        "GUNICORN_MAX_REQUESTS_JITTER": "50",
        "GUNICORN_BIND": "127.0.0.1:9000",
        "FORWARDED_ALLOW_IPS": "10.0.0.2",
        "GUNICORN_LOG_LEVEL": "debug",
        "GUNICORN_ACCESS_LOG": "true",
        "LOG_FORMAT": "text",
        "METRICS_PORT": "9200",
        "GUNICORN_STOCK_WORKERS": "true",
        "STATIC_PUBLISH_DIR": "/srv/static",
        "DATABASE_POOL_SIZE": "3",
        "DATABASE_RESERVED_CONNECTIONS": "9",
        "DATABASE_POOL_TIMEOUT": "7",
        "DATABASE_CONNECT_TIMEOUT": "4",
        "APP_MOUNTS": "/admin=demo.admin:application",
        "APP_MODULE": "myapp:create_app()",
        "SECRET_KEY_FILE": "/run/secrets/secret_key",
        "DATABASE_PASSWORD_FILE": "/run/secrets/db_password",
    }
    assert set(env) == {variable.name for variable in VARIABLES}
    s = load(env, cpus=16)
    assert s.worker_class == "gthread"
    assert s.workers == 3
    assert s.threads == 8
    assert s.worker_connections == 250
    assert s.timeout == 20
    assert s.graceful_timeout == 10
    assert s.keepalive == 5
    assert s.max_requests == 1000
    assert s.max_requests_jitter == 50
    assert s.bind == "127.0.0.1:9000"
    assert s.forwarded_allow_ips == "10.0.0.2"
    assert s.loglevel == "debug"
    assert s.accesslog is True
    assert s.log_format == "text"
    assert s.metrics_port == 9200
    assert s.stock_workers is True
    assert s.static_publish_dir == "/srv/static"
    assert (s.database_pool_size, s.database_reserved_connections) == (3, 9)
    assert s.app_mounts == (("/admin", "demo.admin:application"),)
    assert (s.app_module, s.secret_key_file) == ("myapp:create_app()", "/run/secrets/secret_key")
    assert s.database_password_file == "/run/secrets/db_password"  # noqa: S105 - a path


def test_values_are_stripped():
    env = {"WEB_CONCURRENCY": " 4 ", "WORKER_CLASS": " gevent ", "GUNICORN_BIND": " 127.0.0.1:9000 "}
    s = load(env, cpus=1)
    assert (s.worker_class, s.workers, s.bind) == ("gevent", 4, "127.0.0.1:9000")


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "127.0.0.1:1", "localhost:65535", "[::]:8000", "unix:/run/app.sock"])
def test_good_binds(bind):
    assert load({"GUNICORN_BIND": bind}, cpus=1).bind == bind


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("No", False)],
)
def test_access_log_booleans(raw, expected):
    assert load({"GUNICORN_ACCESS_LOG": raw}, cpus=1).accesslog is expected


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "critical"])
def test_log_levels(level):
    assert load({"GUNICORN_LOG_LEVEL": level}, cpus=1).loglevel == level


def test_zero_keepalive_and_limits_accepted():
    s = load(
        {
            "GUNICORN_KEEPALIVE": "0",
            **BUDGET,
            "GUNICORN_TIMEOUT": str(READ_TIMEOUT - 1),
            "GUNICORN_GRACEFUL_TIMEOUT": str(GRACE - 1),
        },
        cpus=1,
    )
    assert (s.keepalive, s.timeout, s.graceful_timeout) == (
        0,
        READ_TIMEOUT - 1,
        GRACE - 1,
    )


def test_threads_one_is_fine_with_sync_and_gevent():
    assert load({"WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"}, cpus=1).threads == 1
    assert load({"WORKER_CLASS": "gevent", "GUNICORN_THREADS": "1"}, cpus=1).threads == 1


def test_cpus_default_to_available_cpus(monkeypatch):
    monkeypatch.setattr(settings, "available_cpus", lambda: 3)
    assert load({}).workers == 7


def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("WORKER_CLASS", "gevent")
    monkeypatch.setenv("WEB_CONCURRENCY", "6")
    s = load(cpus=1)
    assert (s.worker_class, s.workers) == ("gevent", 6)


# --- max_concurrent_requests ---------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WORKER_CLASS": "sync", "WEB_CONCURRENCY": "3"}, 3),
        ({"WORKER_CLASS": "gthread", "WEB_CONCURRENCY": "3"}, 12),
        ({"WORKER_CLASS": "gthread", "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "3"}, 6),
        ({"WORKER_CLASS": "gevent", "WEB_CONCURRENCY": "2"}, 2000),
        ({"WORKER_CLASS": "gevent", "WEB_CONCURRENCY": "2", "GUNICORN_WORKER_CONNECTIONS": "50"}, 100),
        ({"WORKER_CLASS": "sync", "GUNICORN_WORKER_CONNECTIONS": "50"}, 5),
    ],
)
def test_max_concurrent_requests(env, expected):
    s = load(env, cpus=2)
    assert s.max_concurrent_requests == expected
    as_dict = s.as_dict()
    assert as_dict["max_concurrent_requests"] == expected
    assert as_dict["worker_class"] == s.worker_class
    assert as_dict["workers"] == s.workers


# --- rejections ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["eventlet", "tornado", "SYNC", "gthread2", "gunicorn.workers.ggevent.GeventWorker"])
def test_worker_class_rejected(value):
    message = rejected({"WORKER_CLASS": value}, "WORKER_CLASS", repr(value), "sync, gthread, gevent")
    assert message.startswith("WORKER_CLASS=")


def test_eventlet_rejection_explains_why():
    rejected({"WORKER_CLASS": "eventlet"}, "eventlet was removed")


@pytest.mark.parametrize("value", ["-1", "0", "abc", "2.5", "257", "1e3"])
def test_web_concurrency_rejected(value):
    rejected({"WEB_CONCURRENCY": value}, "WEB_CONCURRENCY", repr(value), "whole number")


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_threads_rejected_without_gthread(worker_class):
    env = {"WORKER_CLASS": worker_class, "GUNICORN_THREADS": "4"}
    rejected(env, "GUNICORN_THREADS", "gthread", worker_class)


def test_threads_rejected_with_default_class():
    rejected({"GUNICORN_THREADS": "4"}, "GUNICORN_THREADS", "gthread")


@pytest.mark.parametrize("value", [str(READ_TIMEOUT), str(READ_TIMEOUT + 1), "600"])
def test_timeout_must_stay_below_nginx(value):
    rejected({**BUDGET, "GUNICORN_TIMEOUT": value}, "GUNICORN_TIMEOUT", "proxy_read_timeout", f"({READ_TIMEOUT} s)")
    assert load({**BUDGET, "GUNICORN_TIMEOUT": str(READ_TIMEOUT - 1)}, cpus=1).timeout == READ_TIMEOUT - 1


@pytest.mark.parametrize("value", [str(GRACE), "300"])
def test_graceful_timeout_must_stay_below_compose_grace(value):
    env = {**BUDGET, "GUNICORN_GRACEFUL_TIMEOUT": value}
    rejected(env, "GUNICORN_GRACEFUL_TIMEOUT", "stop_grace_period", f"({GRACE} s)")


def test_without_nginx_and_docker_around_it_nothing_bounds_the_timeouts():
    s = load({"GUNICORN_TIMEOUT": "600", "GUNICORN_GRACEFUL_TIMEOUT": "300"}, cpus=1)
    assert (s.timeout, s.graceful_timeout) == (600, 300)


@pytest.mark.parametrize(("raw", "seconds"), [("90", 90), ("90s", 90), ("2m", 120)])
def test_budget_follows_what_compose_hands_over(raw, seconds):
    # The compose file passes nginx's proxy_read_timeout and the app's
    # stop_grace_period, in Compose's duration syntax.
    ok = {"GUNICORN_TIMEOUT": str(seconds - 1), "GUNICORN_GRACEFUL_TIMEOUT": str(seconds - 1)}
    env = {"NGINX_PROXY_READ_TIMEOUT": raw, "APP_STOP_GRACE_PERIOD": raw}
    s = load({**env, **ok}, cpus=1)
    assert (s.timeout, s.graceful_timeout) == (seconds - 1, seconds - 1)
    rejected({**env, "GUNICORN_TIMEOUT": str(seconds)}, "GUNICORN_TIMEOUT", f"({seconds} s)")


def test_a_bad_budget_value_names_its_variable():
    rejected({"APP_STOP_GRACE_PERIOD": "soon"}, "APP_STOP_GRACE_PERIOD", "'soon'")


@pytest.mark.parametrize("name", ["GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT", "GUNICORN_WORKER_CONNECTIONS"])
def test_zero_rejected(name):
    rejected({name: "0"}, name)


def test_jitter_needs_max_requests():
    rejected({"GUNICORN_MAX_REQUESTS_JITTER": "50"}, "GUNICORN_MAX_REQUESTS_JITTER", "GUNICORN_MAX_REQUESTS")
    rejected(
        {"GUNICORN_MAX_REQUESTS_JITTER": "50", "GUNICORN_MAX_REQUESTS": "0"},
        "GUNICORN_MAX_REQUESTS_JITTER",
    )


@pytest.mark.parametrize("value", ["8000", "host:", "host:99999", "host:0", "unix:", ":8000", "host:http", "host:-1"])
def test_bad_bind_rejected(value):
    rejected({"GUNICORN_BIND": value}, "GUNICORN_BIND", repr(value), "HOST:PORT", "unix:PATH")


@pytest.mark.parametrize("value", ["maybe", "2", "y"])
def test_access_log_rejected(value):
    rejected({"GUNICORN_ACCESS_LOG": value}, "GUNICORN_ACCESS_LOG", repr(value), "true or false")


@pytest.mark.parametrize("value", ["JSON", "yaml", "logfmt"])
def test_log_format_rejected_lists_choices(value):
    rejected({"LOG_FORMAT": value}, "LOG_FORMAT", repr(value), "json, text")


@pytest.mark.parametrize("value", ["-1", "65536", "http", "9100.5"])
def test_metrics_port_rejected(value):
    rejected({"METRICS_PORT": value}, "METRICS_PORT", repr(value), "from 0 to 65535")


def test_metrics_port_zero_turns_metrics_off():
    assert load({"METRICS_PORT": "0"}, cpus=1).metrics_port == 0


def test_metrics_port_must_not_be_gunicorns():
    rejected({"METRICS_PORT": "8000"}, "METRICS_PORT=8000", "GUNICORN_BIND=0.0.0.0:8000", "0 to turn metrics off")
    rejected({"METRICS_PORT": "9000", "GUNICORN_BIND": "127.0.0.1:9000"}, "METRICS_PORT=9000")
    assert load({"METRICS_PORT": "8000", "GUNICORN_BIND": "unix:/run/app:8000"}, cpus=1).metrics_port == 8000


def test_log_level_rejected_lists_choices():
    rejected({"GUNICORN_LOG_LEVEL": "verbose"}, "GUNICORN_LOG_LEVEL", "debug, info, warning, error, critical")


@pytest.mark.parametrize(
    "name", ["GUNICORN_WORKER_CONNECTIONS", "GUNICORN_KEEPALIVE", "GUNICORN_MAX_REQUESTS", "GUNICORN_TIMEOUT"]
)
def test_integers_rejected(name):
    rejected({name: "lots"}, name, "'lots'")
    rejected({name: "-5"}, name, "'-5'")


# --- CPU sizing -----------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2(root, cpu_max):
    write(root / "cpu.max", cpu_max)
    return root


def v1(root, quota, period="100000\n"):
    write(root / "cpu" / "cpu.cfs_quota_us", quota)
    write(root / "cpu" / "cpu.cfs_period_us", period)
    return root


def test_cgroup_v2_unlimited(tmp_path):
    assert cgroup_cpu_limit(v2(tmp_path, "max 100000\n")) is None


def test_cgroup_v2_limited(tmp_path):
    assert cgroup_cpu_limit(v2(tmp_path, "150000 100000\n")) == pytest.approx(1.5)


def test_cgroup_v2_quarter(tmp_path):
    assert cgroup_cpu_limit(v2(tmp_path, "25000 100000")) == pytest.approx(0.25)


def test_cgroup_v1_unlimited(tmp_path):
    assert cgroup_cpu_limit(v1(tmp_path, "-1\n")) is None


def test_cgroup_v1_limited(tmp_path):
    assert cgroup_cpu_limit(v1(tmp_path, "50000\n")) == pytest.approx(0.5)


def test_cgroup_v2_wins_over_v1(tmp_path):
    v1(tmp_path, "50000\n")
    assert cgroup_cpu_limit(v2(tmp_path, "max 100000\n")) is None
    assert cgroup_cpu_limit(v2(tmp_path, "300000 100000\n")) == pytest.approx(3.0)


def test_cgroup_v1_without_period_is_ignored(tmp_path):
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "50000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_cpu_limit(tmp_path / "does-not-exist") is None


@pytest.mark.parametrize(
    ("limit", "affinity", "expected"),
    [
        (1.5, 8, 2),
        (1.2, 8, 2),  # rounded up, not to the nearest
        (2.5, 8, 3),
        (None, 8, 8),
        (None, 1, 1),
        (0.5, 8, 1),
        (0.01, 8, 1),
        (2.0, 8, 2),
        (16.0, 4, 4),
    ],
)
def test_available_cpus(limit, affinity, expected):
    assert available_cpus(cpu_limit=lambda: limit, affinity=lambda: affinity) == expected


def test_available_cpus_on_this_machine():
    # nproc counts the CPUs this process may run on (its affinity), not a
    # cgroup quota: with no quota, the two agree; with one, ours is no more.
    nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    if cgroup_cpu_limit() is None:
        assert available_cpus() == nproc
    else:
        assert available_cpus() == min(nproc, math.ceil(cgroup_cpu_limit()))


def test_workers_follow_available_cpus(monkeypatch, tmp_path):
    # End to end: a cgroup limit of 1.5 CPUs on an 8-CPU machine sizes 5 workers.
    root = v2(tmp_path, "150000 100000\n")
    monkeypatch.setattr(
        settings,
        "available_cpus",
        lambda: available_cpus(cpu_limit=lambda: cgroup_cpu_limit(root), affinity=lambda: 8),
    )
    assert load({}).workers == 5


def test_messages_quote_the_raw_value():
    # The value is shown as typed (quoted), so that stray whitespace or an
    # empty-looking value is visible.
    message = rejected({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY")
    assert re.search(r"WEB_CONCURRENCY='abc'", message)
