"""Static files, served by nginx alone (docs/static.md): the demo page's
assets by their content-hashed names, the caching they promise, gzip written
at build time, and what nginx refuses. Against the default stack, as `make up`
starts it; the deploy with a changed stylesheet is test_operations.py's."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import time

import pytest

from harness.stack import REPO, Stack

pytestmark = pytest.mark.integration

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"
HASHED = re.compile(r"^/static/(?P<name>[\w.-]+)-(?P<hash>[0-9a-f]{32})\.(?P<ext>css|js)$")
CONTENT_TYPES = {"css": "text/css", "js": "application/javascript"}


def asset_urls(stack: Stack) -> list[str]:
    page = stack.get("/demo")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)


def log_lines(stack: Stack, service: str, request_id: str) -> list[dict]:
    lines = []
    for line in stack.logs(service).splitlines():
        if request_id in line:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def raw_get(stack: Stack, target: str) -> tuple[int, dict[str, str], bytes]:
    """GET with the request target exactly as given: requests (urllib3)
    removes dot segments before sending, an attacker's client does not."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_the_demo_page_links_its_assets_by_content_hashed_names_that_resolve(stack):
    urls = asset_urls(stack)
    assert len(urls) == 2, urls
    for url in urls:
        match = HASHED.match(url)
        assert match, f"{url} is not a content-hashed name"
        source = (REPO / "demo" / "static" / f"{match['name']}.{match['ext']}").read_bytes()
        response = stack.get(url)
        assert response.status_code == 200, url
        # The hash is the content's: the file served is the repository's.
        assert response.content == source, url


def test_every_hashed_asset_is_nginxs_own_immutable_and_gzipped_when_asked(stack):
    for url in asset_urls(stack):
        ext = HASHED.match(url)["ext"]
        request_id = f"static-{time.time_ns()}"
        compressed = stack.get(url, headers={"Accept-Encoding": "gzip", "X-Request-ID": request_id}, stream=True)
        assert compressed.status_code == 200
        assert compressed.headers["Content-Type"] == CONTENT_TYPES[ext]
        assert compressed.headers["Cache-Control"] == IMMUTABLE
        # Written at build time beside the file (gzip_static), not per request.
        assert compressed.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in compressed.headers["Vary"]
        body = gzip.decompress(compressed.raw.read())
        plain = stack.get(url, headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers and plain.content == body
        assert plain.headers["Cache-Control"] == IMMUTABLE and plain.headers["ETag"]
        # The same security headers as every other answer.
        assert "default-src 'none'" in plain.headers["Content-Security-Policy"]
        assert plain.headers["X-Content-Type-Options"] == "nosniff"

        # nginx's access log names no upstream; the app never saw it.
        deadline = time.monotonic() + 10  # nginx flushes its access log every second
        while not (access := log_lines(stack, "nginx", request_id)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(access) == 1, access
        assert access[0]["path"] == url and access[0]["status"] == 200
        assert access[0]["upstream_addr"] == "" and access[0]["upstream_status"] == ""
        assert log_lines(stack, "app", request_id) == []


def test_a_plain_name_is_cached_briefly_and_revalidated_by_its_etag(stack):
    first = stack.get("/static/demo.css")
    assert first.status_code == 200 and first.headers["Content-Type"] == "text/css"
    assert first.headers["Cache-Control"] == SHORT
    again = stack.get("/static/demo.css", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    "target",
    [
        "/static/no-such-file.css",
        "/static/demo-00000000000000000000000000000000.css",
        # The releases' manifests are not served, nor any dotfile.
        "/static/.manifests/",
        "/static/.manifests/anything.json",
    ],
)
def test_a_missing_or_hidden_asset_gets_nginxs_json_404(stack, target):
    status, headers, body = raw_get(stack, target)
    assert status == 404 and headers["content-type"] == "application/json", (target, status, body[:200])
    error = json.loads(body)["error"]
    assert error["status"] == 404 and error["source"] == "nginx"


@pytest.mark.parametrize(
    "target",
    [
        "/static/",
        "/static/../../../etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%252f..%252fetc%252fpasswd",
        "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fnginx%2fnginx.conf",
    ],
)
def test_listing_and_traversal_are_refused_with_a_json_4xx(stack, target):
    status, headers, body = raw_get(stack, target)
    assert 400 <= status < 500, (target, status)
    assert headers["content-type"] == "application/json", (target, status, body[:200])
    assert json.loads(body)["error"]["source"] == "nginx"
    assert b"root:" not in body and b"worker_processes" not in body
