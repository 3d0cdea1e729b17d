"""A WSGI app whose requests outlive any worker timeout, mounted beside the
demo by the concurrency tests (APP_MOUNTS=/outlive=outlive:app) to provoke
gunicorn's: the demo's own limit, DEMO_MAX_WORK_MS, stays below the worker
timeout (demo/config.py), as a fork's own slow view would not.

GET /outlive/sleep?s=N sleeps N seconds (a sync worker's heartbeat stops);
GET /outlive/spin?s=N computes for N seconds of CPU time (a gevent worker's
loop stops). Left alone, each answers 200."""

import time
from urllib.parse import parse_qs


def outlive_sleeping(seconds: float) -> None:
    time.sleep(seconds)


def outlive_spinning(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def app(environ, start_response):
    seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["0"])[0])
    work = {"/sleep": outlive_sleeping, "/spin": outlive_spinning}.get(environ.get("PATH_INFO", ""))
    if work is None:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": {"status": 404}}']
    work(seconds)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"outlived": true}']
