"""What a tune is asked to do, from TUNE_* variables (the shell's, then
.env's, as scripts/lib.sh's `setting` reads them). A bad value stops it
before anything starts, with one line naming the variable.

The load level is the profile's: a LoadTestShape in the locustfile where
there is one; otherwise TUNE_USERS and TUNE_SPAWN_RATE, whose defaults are
the load test's own (loadtest/locust.conf), so that `make tune` measures
what `make loadtest` offers.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from harness.stack import REPO
from serving.settings import SettingsError
from serving.settings import read as read_server_setting

DEFAULT_LOCUSTFILE = "loadtest/locustfile.py"
LOCUST_CONF = REPO / "loadtest" / "locust.conf"
#: The variables the tune itself sets on each candidate; every other one of
#: the app's (docker-compose.yml's app environment) passes through as set.
TUNED = frozenset(
    {
        "WORKER_CLASS",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "GUNICORN_WORKER_CONNECTIONS",
        "DATABASE_POOL_SIZE",
        "DATABASE_URL",
        "COMPOSE_PROFILES",
        "GUNICORN_LOG_LEVEL",
    }
)


class TuneError(ValueError):
    """A bad setting: its message is the one line to print."""


@dataclass(frozen=True)
class TuneSettings:
    locustfile: Path
    #: Whether the locustfile sets the load itself (a LoadTestShape).
    shape: bool
    users: int
    spawn_rate: float
    p95_ms: float
    max_error_ratio: float
    budget_s: float
    run_seconds: int
    app_cpus: float
    database: bool
    replicas: int
    reserved_connections: int
    memory: str
    quick: bool
    #: The app's other settings the user has, for every candidate.
    app_env: dict[str, str]

    @property
    def shown_locustfile(self) -> str:
        """The locustfile as the user names it: relative to the repository."""
        path = self.locustfile
        return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)

    @property
    def spawn_seconds(self) -> int:
        """The ramp-up before the measured part of each run (at least 1 s)."""
        return 1 if self.shape else max(1, math.ceil(self.users / self.spawn_rate))

    def as_dict(self) -> dict:
        return {**asdict(self), "locustfile": str(self.locustfile)}


def dotenv(path: Path = REPO / ".env") -> dict[str, str]:
    """KEY=VALUE lines of .env, quotes removed, as Compose reads the simple ones."""
    values = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
            if match:
                values[match.group(1)] = match.group(2).strip().strip("'\"")
    return values


def locust_conf_defaults(path: Path = LOCUST_CONF) -> dict[str, str]:
    """`users` and `spawn-rate` from the load test's locust.conf."""
    values = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                values[name.strip()] = value.strip()
    return values


def has_shape(locustfile: Path) -> bool:
    """Whether the locustfile defines a LoadTestShape subclass (read, not run)."""
    tree = ast.parse(locustfile.read_text(), filename=str(locustfile))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name == "LoadTestShape":
                    return True
    return False


def app_environment_names(compose_file: Path = REPO / "docker-compose.yml") -> list[str]:
    """The app's variables docker-compose.yml passes through when set (the
    ones it lists without a value)."""
    environment = yaml.safe_load(compose_file.read_text())["services"]["app"]["environment"]
    return [name for name, value in environment.items() if value is None]


def _number(name: str, raw: str, *, minimum: float, maximum: float | None = None, integer: bool = False) -> float:
    expected = f"a {'whole ' if integer else ''}number from {minimum:g}" + (f" to {maximum:g}" if maximum else " up")
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        raise TuneError(f"{name}={raw!r} is not valid: expected {expected}")
    return value


def _duration(name: str, raw: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", raw)
    if not match or float(match.group(1)) <= 0:
        raise TuneError(f"{name}={raw!r} is not valid: expected a duration such as 600, 600s, 10m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise TuneError(f"{name}={raw!r} is not valid: expected yes or no")


def load(env: Mapping[str, str] | None = None, file_values: Mapping[str, str] | None = None, quick: bool = False):
    """The settings, with the defaults it used; TuneError on a bad value."""
    env = os.environ if env is None else env
    file_values = dotenv() if file_values is None else file_values

    def get(name: str, default: str) -> str:
        value = env.get(name)
        if value is None or value == "":
            value = file_values.get(name, "")
        return value if value != "" else default

    conf = locust_conf_defaults()
    raw_locustfile = get("TUNE_LOCUSTFILE", DEFAULT_LOCUSTFILE)
    locustfile = (REPO / raw_locustfile).resolve()
    if locustfile.suffix != ".py" or not locustfile.is_file():
        raise TuneError(f"TUNE_LOCUSTFILE={raw_locustfile!r} is not valid: expected a locustfile (.py) that exists")
    try:
        shape = has_shape(locustfile)
    except SyntaxError as exc:
        raise TuneError(f"TUNE_LOCUSTFILE={raw_locustfile!r} does not parse: {exc.msg}, line {exc.lineno}") from exc
    host_cpus = float(os.cpu_count() or 1)
    app_cpus_default = get("APP_CPUS", "0")
    try:
        app_cpus_default = str(float(app_cpus_default) or host_cpus)
    except ValueError:
        app_cpus_default = str(host_cpus)
    database = _boolean(
        "TUNE_DATABASE", get("TUNE_DATABASE", "yes" if "db" in get("COMPOSE_PROFILES", "").split(",") else "no")
    )
    try:
        reserved = int(read_server_setting("DATABASE_RESERVED_CONNECTIONS", {**file_values, **env}))  # type: ignore[arg-type]
    except SettingsError as exc:
        raise TuneError(str(exc)) from exc
    run_default = "4" if quick else "10"
    app_env = {name: get(name, "") for name in app_environment_names() if name not in TUNED}
    return TuneSettings(
        locustfile=locustfile,
        shape=shape,
        users=int(_number("TUNE_USERS", get("TUNE_USERS", conf.get("users", "30")), minimum=1, integer=True)),
        spawn_rate=_number("TUNE_SPAWN_RATE", get("TUNE_SPAWN_RATE", conf.get("spawn-rate", "10")), minimum=0.1),
        p95_ms=_number("TUNE_P95_MS", get("TUNE_P95_MS", "500"), minimum=1),
        max_error_ratio=_number("TUNE_MAX_ERROR_RATIO", get("TUNE_MAX_ERROR_RATIO", "0.01"), minimum=0, maximum=1),
        budget_s=_duration("TUNE_BUDGET", get("TUNE_BUDGET", "10m")),
        run_seconds=int(
            _number("TUNE_RUN_SECONDS", get("TUNE_RUN_SECONDS", run_default), minimum=2, maximum=600, integer=True)
        ),
        app_cpus=_number("TUNE_APP_CPUS", get("TUNE_APP_CPUS", app_cpus_default), minimum=0.1, maximum=256),
        database=database,
        replicas=int(_number("APP_REPLICAS", get("APP_REPLICAS", "2"), minimum=1, maximum=16, integer=True)),
        reserved_connections=reserved,
        memory=get("APP_MEMORY", "1g"),
        quick=quick,
        app_env={k: v for k, v in app_env.items() if v != ""},
    )
