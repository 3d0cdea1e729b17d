"""CPU time, where the lab reads it, and the CPU figures of a run.

- A container's CPU time so far is its cgroup's counter, so every process in
  it counts. Where the engine runs on this machine the lab reads the cgroup
  file directly (found through the container's PID 1, cgroup v1 or v2, any
  driver); elsewhere the same counter from inside the container, through
  `docker exec`. None when neither answers: the lab then records no CPU
  figures rather than failing.
- This machine's busy time comes from /proc/stat: what else ran meanwhile.
- The app server's workers are the children of its PID 1: their ticks, from
  /proc here, or from inside the container when the engine runs elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from bench.matrix import Config

#: Run inside a container: its own cgroup's counter. On cgroup v2 that is
#: /sys/fs/cgroup/cpu.stat only in a private cgroup namespace (/proc/self/cgroup
#: reads "0::/", Docker's default); on cgroup v1 Docker mounts the container's
#: own group at /sys/fs/cgroup/cpuacct. Anything else fails: no figure rather
#: than the whole machine's.
_CGROUP_CPU_INSIDE = (
    'if [ "$(cat /proc/self/cgroup)" = "0::/" ]; then cat /sys/fs/cgroup/cpu.stat; '
    "else cat /sys/fs/cgroup/cpuacct/cpuacct.usage; fi"
)

#: Run inside an app server's container: the CPU ticks of PID 1's children
#: (gunicorn's or uWSGI's workers), for engines on another machine.
WORKER_TICKS_INSIDE = r"""
import json, os
ticks = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        continue
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[1] == "1":
        ticks[pid] = int(fields[11]) + int(fields[12])
print(json.dumps({"hz": os.sysconf("SC_CLK_TCK"), "ticks": ticks}))
"""


# --- a container's CPU time ---------------------------------------------------


def container_cpu_ns(docker: DockerClient, container_id: str, cgroup_file: Path | None) -> int | None:
    """CPU time the container has used so far, in nanoseconds. Not through
    python-on-whales' container.stats(): `docker stats --no-stream` gives a
    CPU percentage, not this counter, and takes two seconds."""
    # The file when there is one. Measured here: a read 32 µs, a docker exec 75 ms, container.stats() 2.0 s.
    if cgroup_file is not None:
        return read_cgroup_cpu_ns(cgroup_file)
    try:
        return parse_cgroup_cpu_ns(docker.container.execute(container_id, ["sh", "-c", _CGROUP_CPU_INSIDE]))
    except DockerException:
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
        return parse_cgroup_cpu_ns(path.read_text())
    except OSError:
        return None


def parse_cgroup_cpu_ns(text: str) -> int | None:
    """Nanoseconds from cgroup v1's cpuacct.usage (a bare count of them) or
    cgroup v2's cpu.stat (its usage_usec line)."""
    if text.strip().isdigit():
        return int(text.strip())
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec":
            return int(value) * 1000
    return None


# --- this machine and the app server's workers --------------------------------


def host_busy_seconds() -> float | None:
    """Busy CPU time of this machine (all cores) from /proc/stat, if the
    engine runs here; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def is_local_server(pid: int) -> bool:
    """Whether `pid` (a container's PID 1 as the engine reports it) is a
    process on this machine, that is gunicorn's arbiter or uWSGI's master."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"gunicorn" in cmdline or b"uwsgi" in cmdline or b"serving.serve" in cmdline


def children_ticks(pid: int) -> dict[str, int] | None:
    """CPU ticks (user + system) of each child of `pid`, read from /proc."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    ticks = {}
    for child in children:
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        ticks[child] = int(fields[11]) + int(fields[12])
    return ticks


# --- a run's CPU figures -------------------------------------------------------


@dataclass
class Snapshot:
    at: float
    cpu_ns: dict[str, int | None]
    worker_ticks: dict[str, int] | None
    hz: int
    host_busy: float | None  # seconds of busy CPU on this machine so far


def measure(config: Config, before: Snapshot, after: Snapshot, load_seconds: float, requests: int) -> dict:
    """CPU each part used during the run, in cores (over the seconds the load
    lasted: the snapshots around it add a little idle time), and per request
    in milliseconds, and how evenly the app server's workers shared the work."""
    parts = {"generator": config.generator, "app": config.app_service, "front": config.front_service}
    out: dict[str, object] = {f"{p}_cpu": _cores(service, before, after, load_seconds) for p, service in parts.items()}
    for part in parts:
        used = out[f"{part}_cpu"]
        if used is not None and requests:
            out[f"{part}_cpu_ms_per_request"] = round(used * load_seconds * 1000 / requests, 3)
    out.update(_other_cpu(out, before, after, load_seconds))
    out.update(_worker_balance(before, after))
    return out


def _cores(service: str | None, before: Snapshot, after: Snapshot, wall: float) -> float | None:
    if service is None:
        return None
    a, b = before.cpu_ns.get(service), after.cpu_ns.get(service)
    if a is None or b is None:
        return None
    return round((b - a) / 1e9 / wall, 3)


def _other_cpu(ours: dict, before: Snapshot, after: Snapshot, wall: float) -> dict:
    """This machine's busy cores over the snapshots' window, and the part of
    them the run's own containers do not account for."""
    if before.host_busy is None or after.host_busy is None:
        return {}
    window = after.at - before.at
    busy = (after.host_busy - before.host_busy) / window
    used = sum(v for v in (ours["generator_cpu"], ours["app_cpu"], ours["front_cpu"]) if v is not None)
    # What else kept this machine busy meanwhile (other containers, other
    # users, docker-proxy), over the same window: high values mean a
    # disturbed run.
    return {"host_busy": round(busy, 3), "other_cpu": round(max(0.0, busy - used * wall / window), 3)}


def _worker_balance(before: Snapshot, after: Snapshot) -> dict:
    """Each worker's CPU seconds, busiest first, and the busiest one's share."""
    if before.worker_ticks is None or after.worker_ticks is None:
        return {}
    deltas = [after.worker_ticks[pid] - before.worker_ticks.get(pid, 0) for pid in after.worker_ticks]
    total = sum(deltas)
    out: dict[str, object] = {"worker_cpu_s": [round(d / after.hz, 2) for d in sorted(deltas, reverse=True)]}
    if total > 0:
        out["busiest_worker_share"] = round(max(deltas) / total, 3)
    return out
