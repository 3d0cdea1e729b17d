"""nginx's limits per client (docs/security.md): going over the request rate,
or over the connections per client, gets a JSON 429 at once, logged by
nginx. Marked `timing`: whether a request meets the rate's limit depends on
how fast the one before it was answered, which a neighbour's load would
change, so `make test` runs it alone (tests/conftest.py). The hostile edge
itself: test_edge.py."""

from __future__ import annotations

import collections
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.stack import Stack
from tests.integration.test_edge import exchange, responses

pytestmark = [pytest.mark.integration, pytest.mark.timing]


@pytest.fixture(scope="module")
def limited(built_images):
    stack = Stack("edge-limited", NGINX_RATE_LIMIT="5r/s", NGINX_RATE_BURST="5", NGINX_CONNECTIONS_PER_CLIENT="4")
    try:
        yield stack.up()
    finally:
        stack.down()


TOO_MANY = {
    "status": 429,
    "name": "Too Many Requests",
    "message": "Too many requests; slow down.",
    "source": "nginx",
}


def test_going_over_the_request_rate_gets_json_429_at_once(limited):
    # One after another, as fast as they answer: sent at once, more than 4
    # would meet the limit of connections per client instead of the rate's.
    statuses = collections.Counter()
    for _ in range(30):
        started = time.monotonic()
        response = limited.get("/healthz")
        statuses[response.status_code] += 1
        if response.status_code == 429:
            error = response.json()["error"]
            # The id nginx made for the request, in the body and the header alike.
            assert error.pop("request_id") == response.headers["X-Request-ID"]
            assert error == TOO_MANY
            assert time.monotonic() - started < 1, "a refused request must not be delayed"
    print(f"\n30 requests one after another against 5 r/s, burst 5: {dict(statuses)}")
    assert statuses[429] >= 10 and statuses[200] >= 5
    assert "limiting requests, excess" in limited.logs("nginx")


def test_going_over_the_connections_per_client_gets_json_429(limited):
    # 6 slow requests at once against 4 connections per client (and a burst
    # of 5 requests, so that the rate limit is not what refuses them).
    time.sleep(2.5)  # let the previous test's rate bucket drain
    request = b"GET /work/io?ms=800 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: exchange(limited.port, request), range(6)))
    refused = [r for answer, _ in answers if answer for r in responses(answer) if r[0] == 429]
    assert refused, answers
    for _, _, body in refused:
        error = json.loads(body)["error"]
        assert re.fullmatch(r"[0-9a-f]{32}", error.pop("request_id")), "nginx's own $request_id"
        assert error == TOO_MANY
    assert 'limiting connections by zone "per_client_connections"' in limited.logs("nginx")
