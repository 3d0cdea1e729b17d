"""Start locust in the role this container plays (docs/loadtest.md):

  headless (default)  one run against the stack, then exit with the verdict;
                      the master of a distributed run when there are workers
                      (LOCUST_WORKERS > 0, or `--scale loadtest-worker=N`)
  ui                  the web UI (make loadtest-ui)
  worker              a worker of a distributed run

Extra arguments go to locust. Reports (HTML, CSV, summary JSON) are written to
/reports as loadtest-<UTC time>*, so runs never overwrite each other's files.

Whose they are: Compose starts this container as root with no capability but
SETUID and SETGID (loadtest/compose.yml), and this script takes the identity
of the reports directory's owner before locust starts, as the official
images' entrypoints do (postgres's gosu): the reports of `docker compose run
--rm loadtest` belong to whoever owns the checkout, with no variable to pass.
locust never runs as root: when the directory is root's, locust runs as the
image's user 10001 into a scratch directory, and this script, still root,
copies the reports in when it ends (collect()).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

REPORTS = "/reports"
#: Where locust writes when its reports are not written in place: the
#: container's private tmpfs (compose.yml's tmpfs /tmp), gone with it.
SCRATCH = "/tmp/reports"  # noqa: S108 - the container's private tmpfs
#: The image's own unprivileged user (Dockerfile's USER).
IMAGE_USER = (10001, 10001)
#: Compose service names: the workers resolve the master by the first, the
#: master counts the workers by the second.
MASTER_HOST = "loadtest"
WORKER_SERVICE = "loadtest-worker"
#: locust.conf's host, the only one locustfile.py lets a run target.
TARGET = "http://nginx:8080"
#: How long the stack may take to answer before the run gives up on it.
TARGET_WAIT_SECONDS = 30


def fail(message: str) -> None:
    print(f"loadtest: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def drop_empty_settings() -> None:
    """An empty LOCUST_*/LOADTEST_* variable means "the default" (as in
    .env.example), which to locust's parser is an absent one."""
    for name in [n for n, v in os.environ.items() if n.startswith(("LOCUST_", "LOADTEST_")) and not v.strip()]:
        del os.environ[name]


def addresses(name: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    except socket.gaierror:
        return set()


def expected_workers() -> int:
    """LOCUST_WORKERS if set, else the number of worker containers running
    (`--scale loadtest-worker=N`): Compose starts them before this one."""
    raw = os.environ.get("LOCUST_WORKERS", "")
    if raw:
        if not (raw.isascii() and raw.isdigit()):
            fail(f"LOCUST_WORKERS={raw!r} is not valid: expected a whole number of workers (0: no workers)")
        return int(raw)
    return len(addresses(WORKER_SERVICE))


@dataclass(frozen=True)
class Identity:
    """Who locust runs as, chosen while this container is still root."""

    uid: int
    gid: int
    #: Whether locust writes into SCRATCH and root copies the reports into
    #: REPORTS after the run: the directory is root's, and locust is never root.
    collect: bool = False


def identity(role: str, owner: tuple[int, int] | None) -> Identity:
    """The reports directory's owner (uid, gid; None: no directory), or the
    image's user for a worker (it writes no report), where there is no
    directory, and where the directory is root's. A group of root's (gid 0)
    is not taken: the owner's uid stands for its group then, as a user's
    private group does."""
    if role == "worker" or owner is None:
        return Identity(*IMAGE_USER)
    uid, gid = owner
    if uid == 0:
        return Identity(*IMAGE_USER, collect=True)
    return Identity(uid, gid or uid)


def owner_of(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_uid, st.st_gid


def become(who: Identity) -> None:
    """Drop root for good: no supplementary group, then the gid, then the uid
    (after which no capability is left to undo it)."""
    os.setgroups([])
    os.setgid(who.gid)
    os.setuid(who.uid)


def writable_reports_dir() -> str | None:
    """REPORTS if this process can write there; otherwise None, after a
    warning: the run still measures and gates (the summary is printed)."""
    if os.access(REPORTS, os.W_OK | os.X_OK):
        return REPORTS
    try:
        st = os.stat(REPORTS)
        state = f"owned by uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}, and not writable by uid {os.getuid()}"
    except OSError:
        state = "missing"
    print(
        f"loadtest: warning: the reports directory (LOADTEST_REPORTS_DIR, default ./loadtest/reports) is {state}, "
        "so this run keeps no HTML, CSV or JSON report. Let its owner write there (`chmod u+w loadtest/reports`); "
        "the container takes the owner's uid when it starts as root, as loadtest/compose.yml starts it.",
        file=sys.stderr,
        flush=True,
    )
    return None


def report_name(directory: str) -> str:
    """loadtest-<UTC time>, with a number after it if a report of that name
    is in the directory already."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name, n = f"loadtest-{stamp}", 1
    while os.path.exists(f"{directory}/{name}.html") or os.path.exists(f"{directory}/{name}_stats.csv"):
        n += 1
        name = f"loadtest-{stamp}-{n}"
    return name


def shown(name: str) -> str:
    """A report's prefix as the host names it: LOADTEST_REPORTS_DIR, which
    Compose mounts at /reports (absolute from make loadtest; relative to the
    checkout, ./loadtest/reports, on a plain `docker compose run`)."""
    host_dir = os.environ.get("LOADTEST_REPORTS_DIR", "./loadtest/reports").rstrip("/") or "."
    return f"{host_dir}/{name}"


def collect(name: str) -> None:
    """Copy the reports locust wrote in SCRATCH into REPORTS: as root, the
    directory's owner, so they are root's too. Without CAP_DAC_OVERRIDE root
    writes only where the mode lets its owner."""
    for entry in sorted(os.listdir(SCRATCH)):
        if entry.startswith(name):
            shutil.copyfile(f"{SCRATCH}/{entry}", f"{REPORTS}/{entry}")


def run_collecting(args: list[str], who: Identity, name: str) -> int:
    """locust as `who`, a child of this root process, then collect(); its
    exit code. Signals sent to this process (docker stop's SIGTERM, Ctrl-C
    through `docker compose run -T`) go on to locust, so that it still
    writes its reports; with a terminal, Ctrl-C reaches locust from the
    terminal itself, and is not sent twice."""
    child = subprocess.Popen(args, user=who.uid, group=who.gid, extra_groups=[])  # noqa: S603 - locust, our args

    def forward(signum, _frame):
        if signum == signal.SIGINT and os.isatty(sys.stdin.fileno()):
            return
        # Root without CAP_KILL signals only its own uid's processes: for
        # the moment it takes, locust's (the saved uid, 0, brings root back).
        os.seteuid(who.uid)
        try:
            child.send_signal(signum)
        finally:
            os.seteuid(0)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    try:
        collect(name)
    except OSError as exc:
        fail(f"the reports could not be copied into the reports directory: {exc}")
    return code


def wait_for_target() -> None:
    """The stack must already be running: Compose does not start it for this
    service (no depends_on), because starting it would converge it, and a
    load test measures the stack as it is, never rearranges it."""
    target = TARGET
    if os.environ.get("LOCUST_HOST", TARGET).rstrip("/") != TARGET:
        return  # another host: locustfile.py refuses it, naming it
    deadline = time.monotonic() + TARGET_WAIT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{target}/healthz", timeout=5):  # noqa: S310 - the stack's own URL
                return
        except urllib.error.HTTPError:
            return  # an answer, if not a 200: the run will report it
        except OSError as exc:
            if time.monotonic() > deadline:
                fail(
                    f"nothing answers at {target} ({exc}): start the stack first (make up). "
                    "The load test never starts or changes it."
                )
            time.sleep(1)


def main(argv: list[str]) -> None:
    # Reports readable by everyone, whichever uid writes them.
    os.umask(0o022)
    drop_empty_settings()
    role, extra = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("headless", argv)
    if role not in ("headless", "ui", "worker"):
        fail(f"unknown role {role!r}: expected headless, ui or worker")
    who = identity(role, owner_of(REPORTS)) if os.getuid() == 0 else None
    if who is not None and not who.collect:
        become(who)
    args = ["locust"]
    if role == "worker":
        args += ["--worker", "--master-host", os.environ.get("LOCUST_MASTER_NODE_HOST", MASTER_HOST)]
    else:
        wait_for_target()
        if who is not None and who.collect:
            directory = REPORTS if writable_reports_dir() else None
            # Root's directory: written in the scratch directory as the
            # image's user, collected by root when locust ends.
            os.makedirs(SCRATCH, exist_ok=True)
            os.chmod(SCRATCH, 0o1777)  # noqa: S103 - the image's user writes there; a private tmpfs
            written_in = SCRATCH
        else:
            directory = written_in = writable_reports_dir() or SCRATCH
            os.makedirs(written_in, exist_ok=True)
        name = report_name(directory or written_in)
        # The locustfile names the reports after the run (print_verdict):
        # where the host finds them, or nowhere when none is kept.
        os.environ["LOADTEST_REPORTS_SHOWN"] = shown(name) if directory else ""
        args += ["--html", f"{written_in}/{name}.html", "--csv", f"{written_in}/{name}"]
        if role == "headless":
            args.append("--headless")
            workers = expected_workers()
            if workers:
                # The workers find the master by its service name, which a
                # `docker compose run` container only answers to with --use-aliases.
                if not addresses(MASTER_HOST) & addresses(socket.gethostname()):
                    fail(
                        f"distributed mode ({workers} workers): the workers reach the master as "
                        f"'{MASTER_HOST}', but this container has no such name; run it with "
                        "`docker compose run --rm --use-aliases loadtest` (make loadtest does)."
                    )
                args += ["--master", "--expect-workers", str(workers)]
                print(f"loadtest: master of {workers} workers", flush=True)
        if who is not None and who.collect and directory:
            sys.exit(run_collecting(args + extra, who, name))
    if who is not None and who.collect:
        # Nothing to collect (no writable directory): locust still never runs as root.
        become(who)
    os.execvp(args[0], args + extra)


if __name__ == "__main__":
    main(sys.argv[1:])
