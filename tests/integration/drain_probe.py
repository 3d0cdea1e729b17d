"""Run inside the app image (test_operations.py): start gunicorn as the
container does, hold one request in flight and one keep-alive connection,
send gunicorn SIGTERM, and print what each saw, as JSON."""

import http.client
import json
import signal
import subprocess
import sys
import threading
import time

with open("/tmp/gunicorn.log", "w") as log:
    server = subprocess.Popen([sys.executable, "-m", "serving.serve"], stdout=log, stderr=log)


def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    return [response.status, json.loads(response.read())]


def connected():
    deadline = time.monotonic() + 30
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", 8000, timeout=10)
        try:
            get(conn, "/healthz")
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


keep_alive = connected()
before = get(keep_alive, "/readyz")
in_flight = {}


def slow_request():
    conn = http.client.HTTPConnection("127.0.0.1", 8000, timeout=30)
    started = time.monotonic()
    in_flight["status"] = get(conn, "/work/io?ms=1000")[0]
    in_flight["seconds"] = round(time.monotonic() - started, 2)


thread = threading.Thread(target=slow_request)
thread.start()
time.sleep(0.5)
signalled = time.monotonic()
server.send_signal(signal.SIGTERM)
time.sleep(0.3)
try:
    after = get(keep_alive, "/readyz")
except (OSError, http.client.HTTPException) as exc:
    after = type(exc).__name__
thread.join(40)
exit_code = server.wait(60)
print(
    json.dumps(
        {
            "before": before,
            "after": after,
            "in_flight": in_flight,
            "exit_code": exit_code,
            "exited_after": round(time.monotonic() - signalled, 2),
        }
    )
)
