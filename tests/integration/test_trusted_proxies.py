"""Proxies trusted by address, not by hop count (docs/tls.md): behind a real
TLS-terminating proxy in front of nginx, named in TRUSTED_PROXY_ADDRESSES,
each client is limited, logged and seen by the app under its own address;
a client that reaches nginx directly is its own key whatever it forges; and
a missing or malformed setting stops `make up` with one line while the
running stack keeps serving.

The front proxy is a plain nginx from the base image, on a network of its
own with a fixed address; the clients are short-lived containers of the app
image (Python's standard library), each with an address of its own.

Marked `timing`: how many of a client's requests the rate's burst lets
through depends on how fast they were answered, which a neighbour's load
would change, so `make test` runs it alone (tests/conftest.py).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import textwrap
import time

import pytest
import trustme

from harness.stack import REPO, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timing]

FRONT_ADDRESS = "10.231.0.10"
LB_SUBNET, OUTSIDE_SUBNET = "10.231.0.0/24", "10.232.0.0/24"
APP_IMAGE = "flask-concurrency-test/app:local"
#: 5 requests a second and 5 more at once: 30 at once leave about 24 refused.
RATE, BURST, AT_ONCE = "5r/s", "5", 30

FRONT_CONF = """
worker_processes 1;
pid /tmp/front.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
    client_body_temp_path /tmp/body; proxy_temp_path /tmp/proxy; fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi; scgi_temp_path /tmp/scgi;
    # Docker's DNS, asked per request: the front starts whether or not nginx's
    # name resolves yet.
    resolver 127.0.0.11 valid=2s;
    server {
        listen 8443 ssl;
        ssl_certificate /front/cert.pem;
        ssl_certificate_key /front/key.pem;
        location / {
            # As a cloud load balancer does: TLS ends here, the client it saw
            # appended to X-Forwarded-For, the scheme and host it served.
            set $nginx http://nginx:8080;
            proxy_pass $nginx;
            proxy_set_header Host localhost;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host front.example;
        }
    }
}
"""

#: Runs in a client container: AT_ONCE requests released together, each
#: with a forged X-Forwarded-For of its own when asked; prints the client's
#: own address and every (status, body).
CLIENT = textwrap.dedent(
    """
    import json, socket, ssl, sys, threading, urllib.error, urllib.request
    url, count, forge = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "forge"
    context = ssl._create_unverified_context()  # the test's throwaway CA
    results, start = [None] * count, threading.Barrier(count)
    def one(i):
        headers = {"X-Forwarded-For": f"203.0.113.{i + 1}", "X-Forwarded-Proto": "https"} if forge else {}
        request = urllib.request.Request(url, headers=headers)
        start.wait()
        try:
            with urllib.request.urlopen(request, context=context, timeout=20) as response:
                results[i] = [response.status, json.loads(response.read())]
        except urllib.error.HTTPError as error:
            results[i] = [error.code, json.loads(error.read())]
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    print(json.dumps({"address": socket.gethostbyname(socket.gethostname()), "results": results}))
    """
)


@pytest.fixture(scope="module")
def behind_a_proxy(built_images, tmp_path_factory):
    front = tmp_path_factory.mktemp("front")
    ca = trustme.CA()
    leaf = ca.issue_cert("front")
    leaf.cert_chain_pems[0].write_to_path(front / "cert.pem")
    leaf.private_key_pem.write_to_path(front / "key.pem")
    (front / "nginx.conf").write_text(FRONT_CONF)
    # Read by the front's unprivileged user (pytest makes its directories 0700).
    front.chmod(0o755)
    for path in front.iterdir():
        path.chmod(0o644)
    overlay = front / "compose.front.yml"
    overlay.write_text(
        json.dumps(
            {
                "services": {
                    "nginx": {"networks": {"edge": {}, "backend": {}, "lb": {}}},
                    "front": {
                        "image": "${NGINX_BASE_IMAGE}",
                        "entrypoint": ["nginx", "-c", "/front/nginx.conf", "-e", "stderr", "-g", "daemon off;"],
                        "read_only": True,
                        "cap_drop": ["ALL"],
                        "tmpfs": ["/tmp"],
                        "volumes": [f"{front}:/front:ro"],
                        "networks": {"lb": {"ipv4_address": FRONT_ADDRESS}, "outside": {}},
                        "depends_on": ["nginx"],
                    },
                },
                "networks": {
                    "lb": {"ipam": {"config": [{"subnet": LB_SUBNET}]}},
                    "outside": {"ipam": {"config": [{"subnet": OUTSIDE_SUBNET}]}},
                },
            }
        )
    )
    stack = Stack(
        "proxied",
        overlays=(overlay,),
        TRUSTED_PROXY_HOPS="2",
        TRUSTED_PROXY_ADDRESSES=FRONT_ADDRESS,
        NGINX_RATE_LIMIT=RATE,
        NGINX_RATE_BURST=BURST,
    )
    try:
        yield stack.up()
    finally:
        stack.down()


def from_container(stack: Stack, network: str, url: str, forge: bool = False) -> dict:
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", f"{stack.project}_{network}", APP_IMAGE, "python3", "-c", CLIENT]
        + [url, str(AT_ONCE), "forge" if forge else "plain"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def statuses(run: dict) -> dict[int, int]:
    counts: dict[int, int] = {}
    for status, _ in run["results"]:
        counts[status] = counts.get(status, 0) + 1
    return counts


def access_log(stack: Stack) -> list[dict]:
    time.sleep(1.5)  # nginx flushes its access log every second
    return [json.loads(line) for line in stack.logs("nginx").splitlines() if '"logger":"nginx.access"' in line]


def test_clients_behind_the_named_proxy_are_limited_logged_and_seen_by_their_own_addresses(behind_a_proxy):
    # Two clients at the same time (each its own container and address).
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: from_container(behind_a_proxy, "outside", "https://front:8443/client"), "ab")
    assert first["address"] != second["address"]
    for run in (first, second):
        counts = statuses(run)
        print(f"\nclient {run['address']} behind the proxy, {AT_ONCE} at once: {dict(sorted(counts.items()))}")
        # Limited by its own address: 1 + the burst answered, the rest a JSON 429.
        assert set(counts) == {200, 429}, counts
        assert counts[200] <= 1 + int(BURST) + 1 and counts[429] >= AT_ONCE - int(BURST) - 2, counts
        answered = [body for status, body in run["results"] if status == 200]
        assert all(
            body == {"remote_addr": run["address"], "scheme": "https", "host": "front.example"} for body in answered
        )
        assert all(body["error"]["status"] == 429 for status, body in run["results"] if status == 429)
    logged = access_log(behind_a_proxy)
    for run in (first, second):
        mine = [line for line in logged if line["remote_addr"] == run["address"] and line["uri"] == "/client"]
        assert sorted(line["status"] for line in mine) == sorted(status for status, _ in run["results"])
    assert not any(line["remote_addr"] == FRONT_ADDRESS for line in logged), "the proxy's address was the key"


def test_a_client_reaching_nginx_directly_cannot_choose_its_address(behind_a_proxy):
    # On the proxy's network, but not the proxy: 30 requests at once, each
    # forging another address and https.
    forger = from_container(behind_a_proxy, "lb", "http://nginx:8080/client", forge=True)
    counts = statuses(forger)
    print(f"\nforging client {forger['address']}, {AT_ONCE} at once: {dict(sorted(counts.items()))}")
    assert counts.get(429, 0) >= AT_ONCE - int(BURST) - 2, counts
    answered = [body for status, body in forger["results"] if status == 200]
    assert answered and all(body["remote_addr"] == forger["address"] and body["scheme"] == "http" for body in answered)
    logged = [line for line in access_log(behind_a_proxy) if line["uri"] == "/client"]
    assert sum(line["remote_addr"] == forger["address"] for line in logged) >= AT_ONCE
    assert not any(line["remote_addr"].startswith("203.0.113.") for line in logged), "a forged address was logged"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TRUSTED_PROXY_HOPS": "2"}, "configuration error: TRUSTED_PROXY_ADDRESSES is not set"),
        (
            {"TRUSTED_PROXY_HOPS": "2", "TRUSTED_PROXY_ADDRESSES": "10.0.0.0/8,10.0.0.300"},
            "configuration error: TRUSTED_PROXY_ADDRESSES='10.0.0.0/8,10.0.0.300' is not valid: '10.0.0.300'",
        ),
        ({"TRUSTED_PROXY_ADDRESSES": "10.0.0.0/8"}, "is set but TRUSTED_PROXY_HOPS=1 trusts no proxy"),
    ],
)
def test_a_bad_proxy_setting_stops_make_up_with_one_line_and_the_stack_keeps_serving(stack, settings, message):
    before = [c.id for c in (*stack.containers("app"), *stack.containers("nginx"))]
    result = subprocess.run(
        ["make", "up"],
        cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TRUSTED_PROXY")}, **stack.cli_environment()}
        | settings,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("configuration error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert message in lines[0], lines
    assert [c.id for c in (*stack.containers("app"), *stack.containers("nginx"))] == before
    assert stack.get("/").status_code == 200
