"""A database outage as an app sees one, for the integration tests."""

from __future__ import annotations

import subprocess


def refusing(container_id: str, refuse: bool) -> None:
    """The database's port refuses every packet (a TCP reset), or not: the
    server is down as the app sees it, while its name still resolves, as a
    managed database's does. A rule in the container's own network namespace."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container_id], check=True, capture_output=True, text=True
    ).stdout.strip()
    rule = ["INPUT", "-p", "tcp", "--dport", "5432", "-j", "REJECT", "--reject-with", "tcp-reset"]
    command = ["nsenter", "-t", pid, "-n", "iptables", "-I" if refuse else "-D", *rule]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
