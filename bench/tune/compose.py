"""The Compose overlay of a tune, generated from its candidates, in the
style of bench/compose.yml (which it mirrors, not includes: the lab's
services would come with it).

Each candidate gets an internal network of its own holding three
containers: its gunicorn (alias `app`, as the project's nginx proxies to
it), the project's nginx (alias `nginx`, the only host a load test's
locustfile may target: loadtest/locustfile.py's ALLOWED_HOSTS) and a load
generator, the load test's own image, idle until a run is exec'd in it, with
the profile's directory mounted read-only. With a database, every gunicorn
also joins `tune-db`, the network of a throwaway PostgreSQL (the project's
image, its data on a tmpfs), which no nginx or generator reaches.

Values are written out, not interpolated: the file says exactly what ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.tune.candidates import Candidate

APP_IMAGE = "flask-concurrency/app:local"
LOADTEST_IMAGE = "flask-concurrency/loadtest:local"
NGINX_IMAGE = "flask-concurrency/nginx:local"
#: Where the profile's directory is mounted in each generator.
PROFILE_MOUNT = "/tune/profile"
DATABASE_NETWORK = "tune-db"
#: Stands for Compose's `!reset []` in the dict; JSON has no tags.
RESET = "!reset []"

_HARDENED = {
    "profiles": ["tune"],
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    # One-off containers: never restarted behind the tune's back.
    "restart": "no",
    "tmpfs": ["/tmp"],
    "stop_grace_period": "10s",
    # No health checks: each would start a process in the container, load
    # the tune did not ask for. The lab waits itself (Lab.wait_ready).
    "healthcheck": {"disable": True},
}

#: As bench/compose.yml's x-nginx-env: one generator is one client, far
#: over the product's per-client limits by design.
NGINX_ENV = {
    "NGINX_PROXY_READ_TIMEOUT": "60s",
    "SERVER_NAMES": "nginx",
    "NGINX_RATE_LIMIT": "1000000r/s",
    "NGINX_RATE_BURST": "1000000",
    "NGINX_CONNECTIONS_PER_CLIENT": "65535",
    "HSTS_MAX_AGE": "63072000",
    "CONTENT_SECURITY_POLICY": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
}


def generator_user() -> str:
    """Yours, so that the locustfile reads as it does for you (as `make
    loadtest` runs locust); as root, the image's own unprivileged 10001."""
    uid, gid = os.getuid(), os.getgid()
    return "10001:10001" if uid == 0 else f"{uid}:{gid}"


def service_names(candidate: Candidate) -> dict[str, str]:
    """The app server's, nginx's and the generator's service names. The app
    server's starts with `gunicorn-`: the lab reads its effective settings
    from its log by that prefix (Lab.describe)."""
    return {
        "app": f"gunicorn-{candidate.key}",
        "front": f"nginx-{candidate.key}",
        "generator": f"loadgen-{candidate.key}",
    }


def overlay(
    candidates: list[Candidate],
    *,
    cpus: float,
    memory: str,
    profile_dir: Path,
    app_env: dict[str, str],
    database: bool,
    app_image: str = APP_IMAGE,
) -> dict:
    """The overlay (a dict, written as JSON, which Compose reads as YAML).
    `app_env`: the app's other settings, as the user's environment has them."""
    # docker-compose.yml names its images after the project: built here under
    # the fixed names the candidates run.
    services: dict[str, dict] = {
        "app": {"image": app_image},
        "nginx": {"image": NGINX_IMAGE},
        "loadtest": {"image": LOADTEST_IMAGE},
    }
    networks: dict[str, dict] = {}
    for candidate in candidates:
        names = service_names(candidate)
        network = f"tune-{candidate.key}"
        networks[network] = {"internal": True}
        environment = {**app_env, **candidate.environment(), "GUNICORN_LOG_LEVEL": "warning"}
        app: dict = {
            **_HARDENED,
            "image": app_image,
            "pull_policy": "never",
            "cpus": cpus,
            "mem_limit": memory,
            "environment": environment,
            "networks": {network: {"aliases": ["app"]}},
        }
        if database:
            environment.update(
                DATABASE_URL="postgresql+psycopg://app@db:5432/app",
                # A file's path, not a password: the secret is mounted there.
                DATABASE_PASSWORD_FILE="/run/secrets/db_password",  # noqa: S106
            )
            app["secrets"] = ["db_password"]
            app["networks"][DATABASE_NETWORK] = {}
        services[names["app"]] = app
        services[names["front"]] = {
            **_HARDENED,
            "image": NGINX_IMAGE,
            "pull_policy": "never",
            "environment": NGINX_ENV,
            "networks": {network: {"aliases": ["nginx"]}},
            "depends_on": {names["app"]: {"condition": "service_started"}},
        }
        services[names["generator"]] = {
            **_HARDENED,
            "image": LOADTEST_IMAGE,
            "pull_policy": "never",
            # Idle until a run is exec'd; init forwards the stop signal.
            "entrypoint": ["sleep", "infinity"],
            "init": True,
            "user": generator_user(),
            "volumes": [{"type": "bind", "source": str(profile_dir), "target": PROFILE_MOUNT, "read_only": True}],
            "networks": [network],
        }
    if database:
        networks[DATABASE_NETWORK] = {"internal": True}
        # The project's PostgreSQL, as bench/compose.yml's db: its data on a
        # tmpfs, thrown away with the tune.
        services["db"] = {
            "profiles": ["tune"],
            "restart": "no",
            # Compose's YAML tag, written in by write(): the base's data
            # volume goes, the tmpfs below takes its place.
            "volumes": RESET,
            "tmpfs": [
                "/var/run/postgresql:uid=999,gid=999,mode=3775",
                "/tmp:uid=999,gid=999",
                "/var/lib/postgresql:uid=999,gid=999,mode=0700",
            ],
            "healthcheck": {"disable": True},
            "cpus": cpus,
            "networks": [DATABASE_NETWORK],
        }
    # The plots' image (the lab's load generator, with matplotlib), built by
    # its own recipe, never started.
    services["tune-plots"] = {
        "profiles": ["tune"],
        "build": {"context": "./bench", "dockerfile": "loadgen/Dockerfile", "args": ["PYTHON_BASE_IMAGE"]},
        "image": "flask-concurrency/bench-loadgen:local",
        "pull_policy": "never",
    }
    return {"services": services, "networks": networks}


def write(path: Path, data: dict) -> Path:
    """As YAML (JSON is YAML), with RESET turned into the tag it stands for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1).replace(json.dumps(RESET), RESET) + "\n")
    return path
