"""Start locust in the role this container plays (docs/loadtest.md):

  headless (default)  one run against the stack, then exit with the verdict;
                      the master of a distributed run when there are workers
                      (LOCUST_WORKERS > 0, or `--scale loadtest-worker=N`)
  ui                  the web UI (make loadtest-ui)
  worker              a worker of a distributed run

Extra arguments go to locust. Reports (HTML, CSV, summary JSON) are written to
/reports as loadtest-<UTC time>*, so runs never overwrite each other's files,
whoever the user running them is.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.request

REPORTS = "/reports"
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


def reports_dir() -> str:
    """/reports, or, when this uid cannot write there, a scratch directory: the
    run still measures and gates (the summary is printed), and says how to
    get the reports next time."""
    if os.access(REPORTS, os.W_OK | os.X_OK):
        return REPORTS
    try:
        st = os.stat(REPORTS)
        owner = f"owned by uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}"
    except OSError:
        owner = "missing"
    print(
        f"loadtest: warning: the reports directory (LOADTEST_REPORTS_DIR, default ./loadtest/reports) is {owner} "
        f"and not writable by uid {os.getuid()}, which this container runs as, so this run keeps no HTML or CSV "
        "report. Run `make loadtest`, which runs it as you; or pass your ids: `LOCUST_UID=$(id -u) "
        "LOCUST_GID=$(id -g) docker compose run --rm loadtest`; or let any user write there, like /tmp: "
        "`chmod 1777 loadtest/reports`.",
        file=sys.stderr,
        flush=True,
    )
    scratch = "/tmp/reports"  # noqa: S108 - the container's private tmpfs
    os.makedirs(scratch, exist_ok=True)
    return scratch


def reports_prefix() -> str:
    directory = reports_dir()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    prefix, n = f"{directory}/loadtest-{stamp}", 1
    while os.path.exists(f"{prefix}.html") or os.path.exists(f"{prefix}_stats.csv"):
        n += 1
        prefix = f"{directory}/loadtest-{stamp}-{n}"
    return prefix


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
    args = ["locust"]
    if role == "worker":
        args += ["--worker", "--master-host", os.environ.get("LOCUST_MASTER_NODE_HOST", MASTER_HOST)]
    elif role in ("headless", "ui"):
        wait_for_target()
        prefix = reports_prefix()
        args += ["--html", f"{prefix}.html", "--csv", prefix]
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
    else:
        fail(f"unknown role {role!r}: expected headless, ui or worker")
    os.execvp(args[0], args + extra)


if __name__ == "__main__":
    main(sys.argv[1:])
