"""The CIS Docker Benchmark's section 5 (container runtime), as
docker-bench-security v1.6.0 checks it (tests/5_container_runtime.sh), run on
the default stack's containers with `docker inspect`: docker-bench-security
itself is not packaged, and it needs a privileged container. Each check reads
the same field and warns on the same value as the script does.

Expected warnings, each by design: 5.9 (nginx publishes a port: it is the
stack's only way in) and, on a host without AppArmor, 5.2 (no profile can
apply; where AppArmor runs, Docker gives every container its docker-default
profile unless told otherwise, and nothing here does).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.integration

DEFAULT_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SENSITIVE_DIRS = {"/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"}


def _published(inspect: dict) -> list[dict]:
    return [b for bindings in (inspect["NetworkSettings"]["Ports"] or {}).values() if bindings for b in bindings]


def _options(inspect: dict) -> list[str]:
    return inspect["HostConfig"]["SecurityOpt"] or []


#: number -> (title, warns(inspect) -> bool)
CHECKS: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "5.2": ("AppArmor profile", lambda i: i.get("AppArmorProfile", "") in ("", "unconfined")),
    "5.3": ("security options", lambda i: not i["HostConfig"]["SecurityOpt"]),
    "5.4": (
        "no added capabilities",
        lambda i: bool({c.upper().removeprefix("CAP_") for c in i["HostConfig"]["CapAdd"] or []} - DEFAULT_CAPS),
    ),
    "5.5": ("not privileged", lambda i: i["HostConfig"]["Privileged"]),
    "5.6": (
        "no sensitive host directory mounted read-write",
        lambda i: any(m["Source"] in SENSITIVE_DIRS and m["RW"] for m in i["Mounts"]),
    ),
    "5.8": ("no privileged port published", lambda i: any(0 < int(b["HostPort"]) < 1025 for b in _published(i))),
    "5.9": ("only needed ports open", lambda i: bool(_published(i))),
    "5.10": ("host network not shared", lambda i: i["HostConfig"]["NetworkMode"] == "host"),
    "5.11": ("memory limited", lambda i: i["HostConfig"]["Memory"] == 0),
    "5.12": (
        "CPU priority set",
        lambda i: i["HostConfig"]["CpuShares"] == 0 and i["HostConfig"]["NanoCpus"] == 0,
    ),
    "5.13": ("root filesystem read-only", lambda i: not i["HostConfig"]["ReadonlyRootfs"]),
    "5.14": ("bound to a specific interface", lambda i: any(b["HostIp"] in ("", "0.0.0.0") for b in _published(i))),
    "5.15": ("restart attempts bounded", lambda i: i["HostConfig"]["RestartPolicy"]["MaximumRetryCount"] > 5),
    "5.16": ("host PID namespace not shared", lambda i: i["HostConfig"]["PidMode"] == "host"),
    "5.17": ("host IPC namespace not shared", lambda i: i["HostConfig"]["IpcMode"] == "host"),
    "5.20": ("mount propagation not shared", lambda i: any("shared" in m.get("Propagation", "") for m in i["Mounts"])),
    "5.21": ("host UTS namespace not shared", lambda i: i["HostConfig"]["UTSMode"] == "host"),
    "5.22": (
        "default seccomp kept",
        lambda i: any("seccomp" in o and "unconfined" in o for o in i["HostConfig"]["SecurityOpt"] or []),
    ),
    "5.25": ("cgroup usage confirmed", lambda i: bool(i["HostConfig"]["CgroupParent"])),
    "5.26": (
        "no additional privileges",
        lambda i: not any("no-new-privileges" in o for o in _options(i)),
    ),
    "5.27": ("health checked at runtime", lambda i: "Health" not in i["State"]),
    "5.29": ("PIDs limited", lambda i: (i["HostConfig"]["PidsLimit"] or 0) <= 0),
    "5.31": ("host user namespace not shared", lambda i: "host" in (i["HostConfig"]["UsernsMode"] or "").lower()),
    "5.32": ("Docker socket not mounted", lambda i: any("docker.sock" in m["Source"] for m in i["Mounts"])),
}


def _host_has_apparmor() -> bool:
    info = subprocess.run(
        ["docker", "info", "--format", "{{json .SecurityOptions}}"], capture_output=True, text=True, check=True
    )
    return "apparmor" in info.stdout


def test_only_the_expected_section_5_warnings(stack):
    expected = {("nginx", "5.9")} | (set() if _host_has_apparmor() else {("app", "5.2"), ("nginx", "5.2")})
    warnings = set()
    inspected = [(service, container.id) for service in ("app", "nginx") for container in stack.containers(service)]
    # Every service inspected: no warning is also what a service with no container would give.
    assert {service for service, _ in inspected} == {"app", "nginx"}, inspected
    for service, container_id in inspected:
        (inspect,) = json.loads(
            subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True).stdout
        )
        for number, (title, warns) in CHECKS.items():
            if warns(inspect):
                warnings.add((service, number))
                print(f"\nWARN {number} {title}: {service}")
    assert warnings == expected
