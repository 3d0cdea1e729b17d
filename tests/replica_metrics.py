"""What an app replica's metrics cost it, read inside its container: the
multiprocess directory's file count and the time of one scrape of its
metrics server (the soak and the observability tests)."""

from __future__ import annotations

import subprocess

_COUNT_FILES = "import glob; print(len(glob.glob('/tmp/metrics/*.db') + glob.glob('/tmp/metrics/retired/*.db')))"
_TIME_SCRAPE = (
    "import time, urllib.request as u; t = time.monotonic(); "
    "u.urlopen('http://127.0.0.1:9100/metrics', timeout=10).read(); print(time.monotonic() - t)"
)


def exec_python(container_id: str, code: str) -> str:
    return subprocess.run(
        ["docker", "exec", container_id, "python3", "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def metrics_files(container_id: str) -> int:
    """Live workers' files, retired ones awaiting their merge, the archives."""
    return int(exec_python(container_id, _COUNT_FILES))


def scrape_seconds(container_id: str) -> float:
    return float(exec_python(container_id, _TIME_SCRAPE))
