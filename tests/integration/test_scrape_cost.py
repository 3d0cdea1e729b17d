"""What Prometheus's scrapes cost the traffic (docs/observability.md).

The metrics are served by a process of the gunicorn master's own, not by a
worker, so a scrape takes no worker away from requests. This measures it on
the fast endpoint: hey through nginx, alternately with and without a scraper
that reads every replica's metrics ten times a second (fifty times
Prometheus's rate here), side by side in one run, and prints both figures.
Only correctness is asserted (no failed request, every scrape answered, and
a scrape answered while every worker is busy); the figures are for reading:
these machines are shared.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time

import pytest

from harness.load import ensure_hey
from harness.stack import Stack

pytestmark = pytest.mark.bench

ROUNDS = 2
SECONDS = 5
CLIENTS = 16
#: Scrapes of each replica per second while scraping.
SCRAPES_PER_SECOND = 10

#: Runs in the nginx container, which shares the internal network with the
#: replicas: reads every replica's metrics for {seconds} s, printing each time.
SCRAPER = r"""
end=$(( $(date +%s) + {seconds} ))
while [ "$(date +%s)" -lt "$end" ]; do
  for address in $(getent ahostsv4 app | awk '{print $1}' | sort -u); do
    curl -fsS -o /dev/null -w '%{time_total}\n' "http://$address:9100/metrics" || echo failed
  done
  sleep {pause}
done
"""


@pytest.fixture(scope="module")
def stack(built_images):
    ensure_hey()
    # The per-client rate limit (1000 r/s by default) would answer a fast
    # machine's hey with 429s: lifted, as the lab lifts it (bench/compose.yml).
    stack = Stack("scrape-cost", NGINX_RATE_LIMIT="1000000r/s")
    try:
        yield stack.up()
    finally:
        stack.down()


def hey(stack: Stack, path: str) -> tuple[float, dict[str, int]]:
    out = subprocess.run(
        ["hey", "-z", f"{SECONDS}s", "-c", str(CLIENTS), stack.url + path],
        capture_output=True,
        text=True,
        timeout=SECONDS + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    statuses = {s: int(n) for s, n in re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses$", out, re.M)}
    assert "Error distribution" not in out, out
    return rate, statuses


def scraping(stack: Stack) -> subprocess.Popen:
    script = SCRAPER.replace("{pause}", str(1 / SCRAPES_PER_SECOND)).replace("{seconds}", str(SECONDS + 1))
    return subprocess.Popen(
        ["docker", "exec", "-i", stack.container("nginx").id, "sh", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_scraping_costs_the_fast_endpoint_next_to_nothing(stack):
    plain, scraped, scrape_seconds = [], [], []
    for _ in range(ROUNDS):
        rate, statuses = hey(stack, "/healthz")
        assert set(statuses) == {"200"}, statuses
        plain.append(rate)
        scraper = scraping(stack)
        try:
            rate, statuses = hey(stack, "/healthz")
        finally:
            out, _ = scraper.communicate(timeout=SECONDS + 30)
        assert set(statuses) == {"200"}, statuses
        scraped.append(rate)
        lines = out.split()
        assert lines and "failed" not in lines, out[-500:]
        scrape_seconds += [float(x) for x in lines]
    ratio = statistics.mean(scraped) / statistics.mean(plain)
    print(
        f"\nGET /healthz through nginx, {CLIENTS} clients, {SECONDS} s x {ROUNDS} rounds each: "
        f"{statistics.mean(plain):.0f} req/s unscraped, {statistics.mean(scraped):.0f} req/s while every "
        f"replica is scraped {SCRAPES_PER_SECOND}/s (ratio {ratio:.2f}); {len(scrape_seconds)} scrapes, "
        f"median {statistics.median(scrape_seconds) * 1000:.1f} ms, max {max(scrape_seconds) * 1000:.1f} ms"
    )


def test_a_scrape_is_answered_while_every_worker_is_busy(stack):
    """16 x 2 s requests hold every worker of both replicas (10 in all);
    the metrics still answer, and count them in flight."""
    config = stack.effective_config()
    busy = subprocess.Popen(
        ["hey", "-n", str(CLIENTS), "-c", str(CLIENTS), stack.url + "/work/io?ms=1000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        started = time.monotonic()
        out = subprocess.run(
            ["docker", "exec", stack.container("nginx").id, "curl", "-fsS", "http://app:9100/metrics"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        took = time.monotonic() - started
        in_flight = float(re.search(r"^flask_http_requests_in_flight (\S+)$", out, re.M)[1])
    finally:
        busy.communicate(timeout=60)
    print(f"\na scrape with every worker busy: {took * 1000:.0f} ms (docker exec included)")
    assert in_flight == config["max_concurrent_requests"], "every worker of the scraped replica was busy"
