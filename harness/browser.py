"""Headless Chromium, for what only a browser can tell: which of a page's
resources its Content-Security-Policy refuses (docs/security.md).

`load(url)` opens the page in Debian's `chromium` (installed on first use by
scripts/ensure-packages.sh), with a fresh profile, no background traffic of
its own, and a bounded virtual-time budget so that it exits by itself, and
returns the DOM after the page's scripts ran, and the CSP violations
Chromium reported on its console. A refusal happens before any network: a
resource the policy blocks is counted on a machine without internet, while
one it allows just fails to load there, which is no violation.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass

from harness.stack import REPO

#: Debian's package, and its command.
CHROMIUM = "chromium"

FLAGS = (
    "--headless",
    # As root (tests in a container, CI as root) Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Nothing of the browser's own on the network or on the console: updates,
    # component downloads, sync.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The page's console messages, CSP violations among them, on stderr.
    "--enable-logging=stderr",
    "--v=0",
)

#: A console line: `[pid:tid:time:INFO:CONSOLE:line] "message", source: URL (line)`.
CONSOLE = re.compile(r'^\[[^\]]*:CONSOLE[^\]]*\] "(?P<message>.*)", source: ', flags=re.MULTILINE)

#: Every enforced refusal, in Chromium's older wording ("Refused to load the
#: stylesheet '…' because it violates the following Content Security Policy
#: directive: …", "Refused to execute inline script because it violates …",
#: "Refused to apply inline style because it violates …") and its newer one
#: ("Loading the stylesheet '…' violates the following Content Security Policy
#: directive: … The action has been blocked.", "Executing inline script
#: violates …"). Not the notes about a policy itself ("… is ignored when
#: delivered via a <meta> element"), which violate nothing.
VIOLATES = "violates the following Content Security Policy directive"
#: A Content-Security-Policy-Report-Only violation blocks nothing.
REPORT_ONLY = ("[Report Only]", "report-only")


@dataclass(frozen=True)
class Page:
    """A page as Chromium left it: its DOM after the scripts that ran, every
    console message, and the CSP violations among them."""

    dom: str
    console: list[str]
    violations: list[str]


def ensure_chromium() -> str:
    """The chromium command, installed first if missing (Debian's package
    of the same name, as root; otherwise the script says what to install)."""
    subprocess.run([str(REPO / "scripts" / "ensure-packages.sh"), CHROMIUM], check=True, timeout=900)
    path = shutil.which(CHROMIUM)
    assert path, f"scripts/ensure-packages.sh {CHROMIUM} left no {CHROMIUM} command"
    return path


def violations(stderr: str) -> list[str]:
    """The CSP violations in Chromium's log, in the order reported."""
    return [
        message
        for message in CONSOLE.findall(stderr)
        if VIOLATES in message and not any(mark in message for mark in REPORT_ONLY)
    ]


def load(url: str, *, budget_ms: int = 5000, timeout: float = 60) -> Page:
    """Open `url` in headless Chromium and return the page (`budget_ms` of
    virtual time for its scripts and loads; `timeout` wall-clock seconds at
    most, after which the browser and its helper processes are killed)."""
    chromium = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ]
        # A session of its own: Chromium starts zygote, GPU and renderer
        # processes, which a timeout must kill with it.
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            dom, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"chromium did not finish {url} within {timeout} s") from None
    # A browser that failed to start reports no violations either: never
    # read that as a clean page.
    if process.returncode != 0 or "<html" not in dom.lower():
        raise AssertionError(f"chromium failed on {url} (exit {process.returncode}):\n{stderr[-3000:]}")
    return Page(dom=dom, console=CONSOLE.findall(stderr), violations=violations(stderr))


def csp_violations(url: str, **kwargs) -> list[str]:
    """The CSP violation messages Chromium printed while loading `url`."""
    return load(url, **kwargs).violations
