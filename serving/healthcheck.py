"""The container's HEALTHCHECK: GET /healthz (serving/health.py) on gunicorn's own bind address.

Exit 0 when the app answers 200 within the timeout, 1 otherwise. Reads one
setting (GUNICORN_BIND) and uses the standard library only: it runs every
few seconds, and the slim image has no curl.
"""

from __future__ import annotations

import http.client
import socket
import sys

from serving.health import LIVENESS_PATH
from serving.settings import SettingsError, read


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def connection_for(bind: str, timeout: float) -> http.client.HTTPConnection:
    if bind.startswith("unix:"):
        return UnixHTTPConnection(bind[len("unix:") :], timeout)
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def main(timeout: float = 3.0) -> int:
    try:
        bind = str(read("GUNICORN_BIND"))
    except SettingsError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    conn = connection_for(bind, timeout)
    try:
        conn.request("GET", LIVENESS_PATH)
        status = conn.getresponse().status
    except OSError as exc:
        print(f"unhealthy: {bind}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"unhealthy: {LIVENESS_PATH} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
