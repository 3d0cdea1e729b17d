"""Background load for the operational tests: hey against the stack until
stopped, with the count of every answer that was not a 200 and every
connection error."""

from __future__ import annotations

import functools
import re
import signal
import subprocess
from dataclasses import dataclass, field

from harness.stack import REPO

#: Concurrent clients, as a small production burst.
CLIENTS = 16


@dataclass
class LoadResult:
    statuses: dict[int, int]
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return self.total - self.statuses.get(200, 0)

    def summary(self) -> str:
        parts = [f"{self.total} requests", f"{self.failed} failed"]
        parts += [f"{count} x {status}" for status, count in sorted(self.statuses.items()) if status != 200]
        parts += [f"{count} x {error}" for error, count in self.errors.items()]
        return ", ".join(parts)


@functools.cache
def ensure_hey() -> None:
    """hey, Debian's package, installed by the project's own script if missing."""
    subprocess.run([str(REPO / "scripts" / "ensure-packages.sh"), "hey"], check=True, timeout=600)


class Load:
    """hey against nginx until stopped: SIGINT ends it after the requests in
    flight, and it prints its status and error counts."""

    def __init__(self, url: str) -> None:
        ensure_hey()
        self.process = subprocess.Popen(
            ["hey", "-z", "600s", "-c", str(CLIENTS), "-t", "30", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> LoadResult:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=60)
        statuses = {int(s): int(n) for s, n in re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses$", out, re.M)}
        errors_section = out.split("Error distribution:", 1)[1] if "Error distribution:" in out else ""
        errors: dict[str, int] = {}
        for n, message in re.findall(r"^\s+\[(\d+)\]\s+(.+)$", errors_section, re.M):
            # hey lists each client port apart; the cause is what follows the last colon.
            cause = message.rsplit(": ", 1)[-1].strip()
            errors[cause] = errors.get(cause, 0) + int(n)
        assert statuses or errors, f"hey reported nothing:\n{out}"
        return LoadResult(statuses, errors)
