"""A container's CPU time so far, read quickly.

Where the engine runs on this machine, straight from the container's cgroup
(found through its PID 1's /proc/PID/cgroup; cgroup v1 or v2, any driver):
microseconds a read. Elsewhere through the engine API's one-shot stats on its
unix socket, which answers at the engine's one-second collection ticks (the
`docker stats` CLI takes two seconds). None when neither answers: the lab
then records no CPU figures rather than failing.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import socket
import subprocess
from pathlib import Path


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@functools.cache
def socket_path() -> str | None:
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        try:
            host = subprocess.run(
                ["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            host = ""
    host = host or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return None
    path = host[len("unix://") :]
    return path if os.path.exists(path) else None


def _get(path: str) -> dict | None:
    sock = socket_path()
    if sock is None:
        return None
    conn = _UnixConnection(sock)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return json.loads(body)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def cpu_ns(container_id: str) -> int | None:
    """CPU time the container has used so far, in nanoseconds (its cgroup's
    counter, so every process in it counts)."""
    stats = _get(f"/containers/{container_id}/stats?stream=false&one-shot=true")
    try:
        return int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
    except (TypeError, KeyError, ValueError):
        return None


def cgroup_cpu_file(pid: int) -> Path | None:
    """The file holding the CPU time of `pid`'s cgroup, if this machine has it."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        path = path.lstrip("/")
        if controllers == "":  # cgroup v2
            candidates.append(root / path / "cpu.stat")
        elif "cpuacct" in controllers.split(","):
            candidates += [root / controllers / path / "cpuacct.usage", root / "cpuacct" / path / "cpuacct.usage"]
    for candidate in candidates:
        if candidate.is_file() and read_cgroup_cpu_ns(candidate) is not None:
            return candidate
    return None


def read_cgroup_cpu_ns(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    if path.name == "cpuacct.usage":
        return int(text.strip())
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec":
            return int(value) * 1000
    return None


def server_version() -> dict | None:
    return _get("/version")
