"""Hostile traffic at the public edge: every answer is JSON (or the connection
is closed), never a 5xx but the ones HTTP reserves (a JSON 501 or 505), never
HTML or a traceback; and the stack is unharmed afterwards. In every worker
class, since the upstream's own errors differ.

Part one is a catalogue of named hostile requests; part two a seeded
mutational fuzzer: byte-level mutations of valid requests, each sent raw over
a socket: 1,000 of them per class in the default run, 5,000 in the full
one (`-m full`; the statuses seen are printed). FUZZ_CASES and
FUZZ_SEED make a larger or different run.
"""

from __future__ import annotations

import collections
import json
import os
import random
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.stack import Stack, class_stack
from tests.content_security_policy import default_policy

pytestmark = pytest.mark.integration

#: The default policy (docker-compose.yml's CONTENT_SECURITY_POLICY): the
#: site's own scripts, styles and images, nothing framed.
CSP = default_policy()

FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261123"))
#: Mutations per class: the default run's, and the full run's (`-m full`).
FUZZ_CASES = int(os.environ.get("FUZZ_CASES", "1000"))
FULL_FUZZ_CASES = max(FUZZ_CASES, 5000)
#: Slowest acceptable answer. A request nginx still waits on gets no answer
#: (nginx's client timeouts are 10 s); the client stops listening after
#: SILENCE_S of silence.
ANSWER_WITHIN_S = 5.0
SILENCE_S = 2.0
#: 501 (an unsupported transfer coding) and 505 (an unsupported version) are
#: the only 5xx HTTP calls for on a malformed request.
ALLOWED_5XX = {501, 505}

GOOD = [
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"GET /work/io?ms=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n",
    b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b'Content-Length: 13\r\n\r\n{"hello": 1}\n',
    b"GET /healthz?x=1&y=2 HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: abc-123\r\nConnection: keep-alive\r\n\r\n",
]

CHUNKED = b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"

CATALOGUE = {
    # malformed request lines, versions, methods
    "not-http": b"GARBAGE\r\n\r\n",
    "empty-line": b"\r\n\r\n",
    "http-0.9": b"GET /\r\n\r\n",
    "http-2-text": b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n",
    "http-9.9": b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n",
    "bad-version": b"GET / HTTX/1.1\r\nHost: localhost\r\n\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "connect": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    "trace": b"TRACE / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "lowercase-method": b"get / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "space-in-path": b"GET /a b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    # hosts
    "absolute-uri-foreign": b"GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "absolute-uri-own": b"GET http://localhost/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "no-host-1.1": b"GET / HTTP/1.1\r\n\r\n",
    "no-host-1.0": b"GET / HTTP/1.0\r\n\r\n",
    "duplicate-host": b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
    "foreign-host": b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "host-with-path": b"GET / HTTP/1.1\r\nHost: localhost/evil\r\n\r\n",
    # sizes
    "uri-100k": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "uri-6k": b"GET /" + b"a" * 6_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "header-20k": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
    "headers-200": b"GET / HTTP/1.1\r\nHost: localhost\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    + b"\r\n",
    "headers-5000": b"GET / HTTP/1.1\r\nHost: localhost\r\n"
    + b"".join(b"X%d:v\r\n" % i for i in range(5000))
    + b"\r\n",
    # bytes that do not belong
    "nul-in-path": b"GET /a\x00b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "nul-encoded": b"GET /a%00b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "nul-in-header": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n",
    "cr-in-header": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n",
    "lf-only": b"GET / HTTP/1.1\nHost: localhost\n\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n  folded\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length : 5\r\n\r\nhello",
    "header-no-colon": b"GET / HTTP/1.1\r\nHost: localhost\r\nNoColon\r\n\r\n",
    "underscore-header": b"GET / HTTP/1.1\r\nHost: localhost\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n",
    "utf8-bad-path": b"GET /\xc3\x28 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "utf8-bad-query": b"GET /?q=\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "utf8-bad-encoded": b"GET /work/io?ms=%ff%fe HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "utf8-bad-header": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: \xff\xfe\r\n\r\n",
    # path traversal
    "traversal-raw": b"GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "traversal-encoded": b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "traversal-double": b"GET /%252e%252e/etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "traversal-backslash": b"GET /..\\..\\etc\\passwd HTTP/1.1\r\nHost: localhost\r\n\r\n",
    # smuggling
    "cl-and-te": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "duplicate-cl": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6"
    b"\r\n\r\nhello!",
    "negative-cl": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\nhello",
    "huge-cl": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "te-xchunked": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "te-chunked-space": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n"
    b"0\r\n\r\n",
    "te-gzip-chunked": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"0\r\n\r\n",
    "te-twice": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "te-http-1.0": b"POST /work/upload HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-bad": CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-huge": CHUNKED + b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-short": CHUNKED + b"10\r\nhello\r\n0\r\n\r\n",
    "expect-oversized": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
    b"Content-Length: 10000000\r\n\r\n",
    "expect-unknown": b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nExpect: teapot\r\nContent-Length: 0\r\n\r\n",
    # methods and debugger
    "method-long": b"A" * 5000 + b" / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "debugger": b"GET /?__debugger__=yes&cmd=resource&f=style.css HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "internal-error-uri": b"GET /_nginx_errors/500 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "pipelined-50": b"".join(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n" for _ in range(50)),
}

#: The catalogue's requests that are malformed, or over nginx's limits: each
#: must get a 4xx (nginx refuses them before the app sees them). The others
#: are well-formed (an unknown host, a traversal nginx normalises, a method it
#: refuses), get a 501 or 505, or leave nginx waiting for the rest.
MALFORMED = {
    # request lines nginx's parser refuses: 400
    "not-http",
    "lowercase-method",
    "bad-version",
    "space-in-path",
    # RFC 9112 3.2: no Host in HTTP/1.1, two Hosts, an invalid Host: 400
    "no-host-1.1",
    "duplicate-host",
    "host-with-path",
    # a NUL, a bare CR, a space before the colon (RFC 9112 5.1), bytes that are
    # not ASCII in the request line (site.conf.template): 400
    "nul-in-path",
    "nul-in-header",
    "cr-in-header",
    "space-before-colon",
    "te-chunked-space",
    "utf8-bad-path",
    "utf8-bad-query",
    # framing that cannot be trusted (RFC 9112 6): 400
    "cl-and-te",
    "duplicate-cl",
    "negative-cl",
    "huge-cl",
    "te-http-1.0",
    "chunk-size-bad",
    "chunk-size-huge",
    "chunk-size-negative",
    # over the limits of nginx.conf: 414, 431, 431, 413
    "uri-100k",
    "header-20k",
    "headers-5000",
    "expect-oversized",
}


def mutate(rng: random.Random, request: bytes) -> bytes:
    data = bytearray(request)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("flip", "insert", "delete", "duplicate-line", "replace"))
        if not data:
            break
        at = rng.randrange(len(data))
        if kind == "flip":
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            data[at:at] = bytes([rng.randrange(256)]) * rng.choice((1, 1, 2, 40))
        elif kind == "delete":
            del data[at : at + rng.choice((1, 1, 2, 8))]
        elif kind == "replace":
            data[at] = rng.choice(b"\x00\r\n :/%\xff\t\x7f")
        else:
            lines = bytes(data).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


def exchange(port: int, raw: bytes, tls: ssl.SSLContext | None = None) -> tuple[bytes, float]:
    """Send `raw` (over TLS with `tls`) and read until the server closes, or
    has sent a whole first response, or falls silent (it waits for the rest of
    an incomplete request, which is its right): (answer, seconds)."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=SILENCE_S) as plain:
        sock = tls.wrap_socket(plain, server_hostname="localhost") if tls else plain
        try:
            sock.sendall(raw)
            while chunk := sock.recv(65536):
                answer += chunk
                if raw.count(b"HTTP/1.1\r\n") <= 1 and _complete(answer):
                    break
        except (ConnectionResetError, BrokenPipeError, TimeoutError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            pass
    return answer, time.monotonic() - started


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    lines = head.lower().split(b"\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")), None)
    return length is not None and len(body) >= length


def responses(answer: bytes) -> list[tuple[int, bytes, bytes]]:
    """(status, headers, body) of each response in `answer` (pipelining gives several)."""
    found = []
    while answer.startswith(b"HTTP/"):
        head, sep, rest = answer.partition(b"\r\n\r\n")
        assert sep, answer[:300]
        status = int(head.split(b" ", 2)[1])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        if length is None:  # chunked or until close: the rest is this body
            found.append((status, head, rest))
            break
        found.append((status, head, rest[:length]))
        answer = rest[length:]
    assert not answer or found, answer[:300]
    return found


def check(name: str, answer: bytes, seconds: float, statuses: collections.Counter) -> list[int]:
    """Checks one answer, counts it in `statuses`; the statuses it holds
    (none if the connection closed unanswered)."""
    assert seconds < ANSWER_WITHIN_S, (name, seconds)
    if not answer:
        statuses["closed"] += 1
        return []
    if not answer.startswith(b"HTTP/"):
        # An HTTP/0.9 answer is a bare body: still JSON, never HTML.
        statuses["0.9 body"] += 1
        assert answer.startswith(b'{"error":'), (name, answer[:200])
        return [json.loads(answer)["error"]["status"]]
    found = responses(answer)
    for status, head, body in found:
        statuses[status] += 1
        assert status < 500 or status in ALLOWED_5XX, (name, head, body[:200])
        lowered = body.lower()
        assert b"<html" not in lowered and b"traceback" not in lowered, (name, head, body[:300])
        if status >= 400 or body:
            assert b"content-type: application/json" in head.lower(), (name, head, body[:200])
        if status >= 400:
            # The body says what the status line says.
            assert json.loads(body)["error"]["status"] == status, (name, head, body[:200])
    return [status for status, _, _ in found]


# --- stacks, one per worker class -------------------------------------------------


@pytest.fixture(scope="module", params=["sync", "gthread", "gevent"])
def edge(request, shared_stacks):
    """The run's shared stack of the class (tests/integration/conftest.py)."""
    return class_stack(shared_stacks, request.param)


def gunicorn_pids(stack: Stack) -> set[str]:
    return {p["pid"] for p in stack.processes("app") if "gunicorn" in p["args"]}


def hostile_traffic(port: int, mutations: int, tls: ssl.SSLContext | None = None) -> collections.Counter:
    """The catalogue, then `mutations` seeded mutations, each checked, the
    malformed ones of the catalogue answered with a 4xx; the statuses seen
    (printed)."""
    assert MALFORMED <= CATALOGUE.keys(), MALFORMED - CATALOGUE.keys()
    statuses: collections.Counter = collections.Counter()
    for name, raw in CATALOGUE.items():
        answered = check(name, *exchange(port, raw, tls), statuses)
        if name in MALFORMED:
            assert answered and all(400 <= status < 500 for status in answered), (name, answered)
    catalogue = dict(statuses)

    rng = random.Random(FUZZ_SEED)
    cases = [mutate(rng, rng.choice(GOOD)) for _ in range(mutations)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda raw: exchange(port, raw, tls), cases))
    for i, (answer, seconds) in enumerate(answers):
        check(f"mutation {i}: {cases[i][:120]!r}", answer, seconds, statuses)
    over = "TLS" if tls else "plain HTTP"
    print(f"\n{over}: catalogue {len(CATALOGUE)} -> {catalogue}")
    seen = dict(sorted(statuses.items(), key=str))
    print(f"{over}: seed {FUZZ_SEED}, {mutations} mutations; all statuses {seen}")
    return statuses


def test_hostile_catalogue_and_mutations_get_json_4xx_and_harm_nothing(edge):
    unharmed_by(edge, FUZZ_CASES)


@pytest.mark.full
def test_the_full_fuzzer_gets_json_4xx_and_harms_nothing(edge):
    unharmed_by(edge, FULL_FUZZ_CASES)


def unharmed_by(edge: Stack, mutations: int) -> None:
    pids_before = gunicorn_pids(edge)
    print(f"\n{edge.effective_config()['worker_class']}:", end="")
    hostile_traffic(edge.port, mutations)
    # Unharmed: a normal request answers at once, from the same workers.
    started = time.monotonic()
    assert edge.get("/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 2
    assert gunicorn_pids(edge) == pids_before, "a gunicorn worker died under the fuzzer"


def test_a_foreign_host_is_refused_with_json_421(edge):
    response = edge.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 421
    assert response.json()["error"]["status"] == 421
    assert edge.get("/").status_code == 200


def test_security_headers_on_app_and_nginx_answers(edge):
    for path, status in (("/", 200), ("/nope", 404)):
        response = edge.get(path)
        assert response.status_code == status
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    nginx_error = edge.get("/", headers={"Host": "evil.example"})
    assert nginx_error.headers["Cache-Control"] == "no-store"
    assert nginx_error.headers["Content-Security-Policy"] == CSP


@pytest.mark.parametrize("service", ["app", "nginx"])
def test_every_container_has_memory_cpu_and_pids_limits(stack, service):
    # docker-bench-security 5.10 (memory), 5.11 (CPU), 5.28 (PIDs).
    containers = stack.containers(service)
    # The default stack: APP_REPLICAS (2) app replicas, one nginx.
    assert len(containers) == {"app": 2, "nginx": 1}[service], [c.name for c in containers]
    for container in containers:
        host_config = container.host_config
        assert host_config.memory > 0
        assert host_config.pids_limit and host_config.pids_limit > 0
        assert host_config.cpu_shares > 0 or host_config.nano_cpus > 0
