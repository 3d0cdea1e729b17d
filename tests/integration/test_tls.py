"""HTTPS at the edge, against the running stack with a `make certs`
certificate: verified TLS, HTTP/2 by ALPN, 308 from plain HTTP, HSTS, the
scheme the app sees, old protocols and weak ciphers refused, a scanner with
nothing HIGH, the hostile-request fuzzer over TLS; and a bad certificate
stopping the start before anything runs. TLS terminated in front of nginx,
by a real proxy named in TRUSTED_PROXY_ADDRESSES: test_trusted_proxies.py."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import trustme

from harness.stack import REPO, Stack, free_port, project_containers
from tests.integration.test_edge import hostile_traffic
from tests.nginx_walk import BASE_IMAGE_FILES, loaded_files, walk

pytestmark = pytest.mark.integration

CERTS = REPO / "certs"
CA = CERTS / "ca" / "rootCA.pem"
#: testssl.sh's one HIGH that is the certificate's, not the server's: a local
#: CA names no OCSP responder or CRL. A public CA's certificate does.
LOCAL_CA_FINDINGS = {"cert_revocation"}


@pytest.fixture(scope="module")
def tls_stack(built_images):
    # curl, for its HTTP/2 client; everything else comes with make certs.
    subprocess.run([str(REPO / "scripts" / "ensure-packages.sh"), "curl"], check=True, timeout=600)
    made = subprocess.run(["make", "certs"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert "TLS_CERT_FILE=certs/localhost.pem" in made.stdout and "certs/ca/rootCA.pem" in made.stdout
    stack = Stack(
        "tls",
        overlays=(REPO / "compose.tls.yml",),
        TLS_CERT_FILE="certs/localhost.pem",
        TLS_KEY_FILE="certs/localhost-key.pem",
        HTTPS_PORT=str(free_port()),
    )
    try:
        yield stack.up()
    finally:
        stack.down()


def https_url(stack: Stack, path: str = "/") -> str:
    return f"https://localhost:{stack.env['HTTPS_PORT']}{path}"


def test_nginx_with_a_certificate_loads_the_https_modes_files(tls_stack):
    # The certificate mounted, the https mode's servers and tls.conf instead
    # of the http mode's server (tests/nginx_walk.py), and nothing else.
    nginx = tls_stack.container("nginx")
    loaded = loaded_files(tls_stack.docker.container.execute(nginx, ["nginx", "-T", "-q", "-e", "stderr"]))
    assert [path for path in loaded if path not in BASE_IMAGE_FILES] == [path for path, _ in walk("https")]


def test_https_serves_verified_against_the_local_ca(tls_stack):
    response = requests.get(https_url(tls_stack), verify=CA, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"service": "flask-concurrency", "status": "ok"}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https_url(tls_stack), timeout=10)  # the system's CAs do not know it


def test_http2_is_negotiated_by_alpn(tls_stack):
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--cacert",
            str(CA),
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            https_url(tls_stack),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out == "2"


def test_plain_http_redirects_with_308_keeping_path_and_query(tls_stack):
    response = tls_stack.get("/work/io?ms=1&x=%2F", allow_redirects=False)
    assert response.status_code == 308
    assert response.headers["Location"] == https_url(tls_stack, "/work/io?ms=1&x=%2F").replace("localhost", "127.0.0.1")
    assert "Strict-Transport-Security" not in response.headers
    post = tls_stack.request("POST", "/work/upload", data=b"abc", allow_redirects=False)
    assert post.status_code == 308  # the method and body are kept: not 301/302


def test_hsts_on_https_answers_only(tls_stack):
    for path in ("/", "/nope"):
        response = requests.get(https_url(tls_stack, path), verify=CA, timeout=10)
        assert response.headers["Strict-Transport-Security"] == "max-age=63072000"
        # The same stack's plain HTTP answer, the redirect, has none (RFC 6797 7.2).
        plain = tls_stack.get(path, allow_redirects=False)
        assert plain.status_code == 308
        assert "Strict-Transport-Security" not in plain.headers


def test_the_app_sees_https_as_the_scheme(tls_stack):
    forged = {"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.7"}
    client = requests.get(https_url(tls_stack, "/client"), headers=forged, verify=CA, timeout=10).json()
    assert client["scheme"] == "https"
    assert client["remote_addr"] != "203.0.113.7"


def handshake(port: int, version: ssl.TLSVersion, ciphers: str | None = None) -> str:
    """The protocol a handshake with only `version` (and `ciphers`) agrees on."""
    context = ssl.create_default_context(cafile=CA)
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            return tls.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"])
def test_tls_1_0_and_1_1_are_refused(tls_stack, version):
    port = int(tls_stack.env["HTTPS_PORT"])
    assert handshake(port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    # The client offers it at OpenSSL's lowest security level, where it does
    # speak it to a server that allows it: only nginx refuses.
    with permissive_server(version) as control:
        assert handshake(control, version, "ALL:@SECLEVEL=0") in ("TLSv1", "TLSv1.1")
    with pytest.raises(ssl.SSLError):
        handshake(port, version, "ALL:@SECLEVEL=0")


@contextlib.contextmanager
def permissive_server(version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2):
    """A server of `version` on 127.0.0.1 with the stack's certificate that
    takes any cipher, for one handshake: the positive control showing that
    this client does speak a protocol or a cipher, so that only nginx can be
    refusing it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_cert_chain(CERTS / "localhost.pem", CERTS / "localhost-key.pem")
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept_one():
            with contextlib.suppress(OSError), listener.accept()[0] as sock:
                with contextlib.suppress(ssl.SSLError), context.wrap_socket(sock, server_side=True) as tls:
                    tls.recv(1)

        thread = threading.Thread(target=accept_one, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(timeout=10)


#: Without forward secrecy (RSA key exchange), and CBC with SHA-1 MACs: what
#: this client can still offer at OpenSSL's lowest security level.
WEAK_CIPHERS = ["AES128-SHA", "AES256-GCM-SHA384", "AES256-SHA256", "ECDHE-RSA-AES128-SHA"]


@pytest.mark.parametrize("cipher", WEAK_CIPHERS)
def test_weak_and_non_forward_secret_ciphers_are_refused(tls_stack, cipher):
    offered = f"{cipher}:@SECLEVEL=0"
    with permissive_server() as port:
        assert handshake(port, ssl.TLSVersion.TLSv1_2, offered) == "TLSv1.2"  # the client speaks it
    with pytest.raises(ssl.SSLError):
        handshake(int(tls_stack.env["HTTPS_PORT"]), ssl.TLSVersion.TLSv1_2, offered)


#: testssl.sh's checks in the default run: all of its own default run's but
#: each cipher tried one by one (-e) and the client simulations (-c), most
#: of its time. The cipher categories (-s), forward secrecy (-f) and RC4
#: (-4) still grade what is offered, and the handshakes above try the weak
#: ciphers one by one. The full run (`-m full`) runs every default check.
TESTSSL_QUICK = ["--protocols", "--std", "--fs", "--rc4", "--server-preference", "--server-defaults"]
TESTSSL_QUICK += ["--headers", "--vulnerable"]


@pytest.mark.parametrize(
    "checks", [pytest.param(TESTSSL_QUICK, id="quick"), pytest.param([], id="full", marks=pytest.mark.full)]
)
def test_testssl_reports_nothing_high_or_worse(tls_stack, tmp_path, checks):
    subprocess.run([str(REPO / "scripts" / "ensure-packages.sh"), "testssl:testssl.sh"], check=True, timeout=600)
    report = tmp_path / "testssl.json"
    subprocess.run(
        ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--add-ca", str(CA), "--jsonfile", str(report)]
        + [*checks, f"127.0.0.1:{tls_stack.env['HTTPS_PORT']}"],
        capture_output=True,
        timeout=600,
        check=False,  # its exit code counts findings; the report says which
    )
    findings = json.loads(report.read_text())
    severities = {}
    for finding in findings:
        severities[finding["severity"]] = severities.get(finding["severity"], 0) + 1
    print(f"\ntestssl.sh: {severities}")
    # Nothing CRITICAL, and no more HIGH than the local CA's certificate accounts for.
    assert severities.get("CRITICAL", 0) == 0, severities
    assert severities.get("HIGH", 0) <= len(LOCAL_CA_FINDINGS), severities
    assert not [f for f in findings if f["severity"] == "FATAL"], findings
    serious = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL") and f["id"] not in LOCAL_CA_FINDINGS]
    assert serious == [], serious
    ids = {f["id"]: f for f in findings}
    assert ids["TLS1"]["finding"] == "not offered" and ids["TLS1_1"]["finding"] == "not offered"
    assert ids["TLS1_3"]["finding"].startswith("offered")


def test_the_hostile_catalogue_over_tls_gets_json_4xx(tls_stack):
    # hostile_traffic asserts a JSON 4xx for each of the catalogue's malformed
    # requests (test_edge.MALFORMED), and no 5xx but a JSON 501 or 505 for any.
    context = ssl.create_default_context(cafile=CA)
    hostile_traffic(int(tls_stack.env["HTTPS_PORT"]), 1000, tls=context)
    assert requests.get(https_url(tls_stack, "/healthz"), verify=CA, timeout=5).status_code == 200


# --- a bad certificate stops the start ---------------------------------------------


@pytest.fixture(scope="module")
def bad_certs(tmp_path_factory) -> Path:
    """Certificates from a throwaway CA: a good pair, an expired one, and a key
    that belongs to another certificate. Readable by nginx's user."""
    where = tmp_path_factory.mktemp("bad-certs")
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    good = ca.issue_cert("localhost")
    expired = ca.issue_cert(
        "localhost", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
    )
    other = ca.issue_cert("localhost")
    for name, leaf in (("good", good), ("expired", expired), ("other", other)):
        leaf.cert_chain_pems[0].write_to_path(str(where / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(where / f"{name}-key.pem"))
    for path in where.iterdir():
        path.chmod(0o644)
    return where


def start(env: dict[str, str], project: str) -> subprocess.CompletedProcess:
    """`make up` with `env`, as its own Compose project on free ports."""
    scrubbed = {k: v for k, v in os.environ.items() if not k.startswith(("TLS_", "COMPOSE_"))}
    return subprocess.run(
        ["make", "up"],
        cwd=REPO,
        env={**scrubbed, "COMPOSE_PROJECT_NAME": project, "HTTP_PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("cert-only", "configuration error: TLS_KEY_FILE is not set, but TLS_CERT_FILE is"),
        ("key-only", "configuration error: TLS_CERT_FILE is not set, but TLS_KEY_FILE is"),
        ("missing", "configuration error: TLS_CERT_FILE={dir}/missing.pem: no such file"),
        ("expired", "configuration error: TLS_CERT_FILE={dir}/expired.pem expired on"),
        ("mismatched", "does not match the certificate in TLS_CERT_FILE={dir}/good.pem"),
        ("unreadable", "TLS_KEY_FILE={dir}/unreadable-key.pem cannot be read by nginx's user (uid 101)"),
    ],
)
def test_a_bad_certificate_stops_make_up_naming_the_variable(bad_certs, case, expected):
    d = bad_certs
    shutil.copy(d / "good-key.pem", d / "unreadable-key.pem")
    (d / "unreadable-key.pem").chmod(0o600)
    env = {
        "cert-only": {"TLS_CERT_FILE": f"{d}/good.pem"},
        "key-only": {"TLS_KEY_FILE": f"{d}/good-key.pem"},
        "missing": {"TLS_CERT_FILE": f"{d}/missing.pem", "TLS_KEY_FILE": f"{d}/good-key.pem"},
        "expired": {"TLS_CERT_FILE": f"{d}/expired.pem", "TLS_KEY_FILE": f"{d}/expired-key.pem"},
        "mismatched": {"TLS_CERT_FILE": f"{d}/good.pem", "TLS_KEY_FILE": f"{d}/other-key.pem"},
        "unreadable": {"TLS_CERT_FILE": f"{d}/good.pem", "TLS_KEY_FILE": f"{d}/unreadable-key.pem"},
    }[case]
    project = f"flask-concurrency-test-badtls-{case}"
    started = time.monotonic()
    result = start(env, project)
    try:
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("configuration error:")]
        assert len(errors) == 1 and expected.format(dir=d) in errors[0], result.stderr
        assert "Traceback" not in result.stderr
        assert project_containers(project) == [], "nothing may start"
        assert time.monotonic() - started < 60
    finally:
        subprocess.run(["docker", "compose", "-p", project, "down"], cwd=REPO, capture_output=True)


def test_a_good_pair_passes_the_check(bad_certs):
    env = {**os.environ, "TLS_CERT_FILE": f"{bad_certs}/good.pem", "TLS_KEY_FILE": f"{bad_certs}/good-key.pem"}
    result = subprocess.run([str(REPO / "scripts" / "check-tls.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- no proxy in front (TLS terminated in front: test_trusted_proxies.py) --------------


def test_one_hop_ignores_every_forwarded_header_from_the_client(stack):
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil"}
    response = stack.get("/client", headers=headers)
    assert response.status_code == 200, response.text
    client = response.json()
    assert client["remote_addr"] not in ("6.6.6.6", "203.0.113.9")
    assert client["scheme"] == "http"
    assert client["host"] == f"127.0.0.1:{stack.port}"
