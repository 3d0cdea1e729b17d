"""A plain WSGI callable, no Flask: any WSGI application can be mounted
beside the app, a Django project's `application` the same way
(`APP_MOUNTS=/plain=demo.plain_wsgi:application`; docs/concurrency.md). Off
by default.

It owns its responses, its errors included: here every one is JSON, with
the request id the server put in the environ. An exception it lets out is
answered by the server with a JSON 500 (serving/dispatch.py); GET /fail
shows it.
"""

from __future__ import annotations

import json


def _json(start_response, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    script_name, path = environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO") or "/"
    if path == "/":
        # SCRIPT_NAME is the prefix it is mounted at: URLs it builds start there.
        return _json(
            start_response,
            "200 OK",
            {"app": "plain", "script_name": script_name, "path_info": path, "links": {"self": f"{script_name}/"}},
        )
    if path == "/fail":
        raise RuntimeError("a failure the server answers with a JSON 500")
    error = {"status": 404, "name": "Not Found", "message": f"No such resource: {script_name}{path}"}
    if "HTTP_X_REQUEST_ID" in environ:
        error["request_id"] = environ["HTTP_X_REQUEST_ID"]
    return _json(start_response, "404 Not Found", {"error": error})
