"""What Prometheus's scrapes cost the traffic (docs/observability.md).

The metrics are served by a process of the gunicorn master's own, not by a
worker, so a scrape takes no worker away from requests. This measures it on
the fast endpoint: hey through nginx, alternately with and without a scraper
that reads every replica's metrics as often as it can, up to ten times a
second, side by side in one run. Asserted: no failed request, every scrape
answered, the scraper's rate, the throughput ratio and the scrapes' times
within bounds loose enough for a shared 2-core machine (see the constants),
and a scrape answered while every worker is busy.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time

import pytest

from harness.load import ensure_hey
from harness.stack import Stack

pytestmark = [pytest.mark.bench, pytest.mark.timing]

ROUNDS = 2
SECONDS = 5
CLIENTS = 16
#: Scrapes of each replica per second the scraper aims at while scraping.
SCRAPES_PER_SECOND = 10

# The bounds, from the figures of one run (2 cores shared by hey, nginx,
# gunicorn and the scraper; two 5 s rounds each way): 1,159 req/s
# unscraped, 1,053 scraped (ratio 0.91); 100 scrapes, 12 ms at the median,
# 88 ms at most.
#
#: Scraped over unscraped req/s, each the mean of ROUNDS runs alternated in
#: the same run. Fast runs vary by about 15 % from one to the next
#: (docs/benchmarks/README.md, *Limits*), so 0.91 can read as low as
#: 0.91 x 0.85 / 1.15 = 0.67 by noise alone; 0.6 still fails a scrape that
#: costs four times the measured 9 % (a metrics server taking most of a core).
MIN_THROUGHPUT_RATIO = 0.6
#: The loop's forks on two busy cores hold the scraper below its aim: the 100
#: scrapes above are 100 / (2 rounds x 6 s x 2 replicas) = 4 per replica per
#: second, 20 times Prometheus's rate (one scrape every 5 s). At least 1 a
#: second (5 times Prometheus's rate), or the ratio measured too little
#: scraping to mean anything.
MIN_SCRAPES_PER_REPLICA_SECOND = 1.0
#: 20 times the measured median (12 ms).
MAX_MEDIAN_SCRAPE_S = 0.25
#: Prometheus's scrape timeout here: its 5 s scrape_interval
#: (monitoring/prometheus/prometheus.yml), which the timeout defaults to. A
#: slower scrape would be a failed one (88 ms measured).
MAX_SCRAPE_S = 5.0

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


def test_scraping_every_replica_costs_the_fast_endpoint_at_most_40_percent(stack):
    """Scraped req/s at least MIN_THROUGHPUT_RATIO of unscraped, with the
    scraper reaching every replica at least MIN_SCRAPES_PER_REPLICA_SECOND
    and each scrape answered in time."""
    replicas = len(stack.containers("app"))
    assert replicas >= 2, "the cost is measured over several replicas"
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
    per_replica_second = len(scrape_seconds) / (ROUNDS * (SECONDS + 1) * replicas)
    median, slowest = statistics.median(scrape_seconds), max(scrape_seconds)
    figures = (
        f"GET /healthz through nginx, {CLIENTS} clients, {SECONDS} s x {ROUNDS} rounds each: "
        f"{statistics.mean(plain):.0f} req/s unscraped, {statistics.mean(scraped):.0f} req/s while every "
        f"replica is scraped (ratio {ratio:.2f}); {len(scrape_seconds)} scrapes of {replicas} replicas, "
        f"{per_replica_second:.1f} per replica per second, median {median * 1000:.1f} ms, "
        f"max {slowest * 1000:.1f} ms"
    )
    print(f"\n{figures}")
    assert per_replica_second >= MIN_SCRAPES_PER_REPLICA_SECOND, figures
    assert ratio >= MIN_THROUGHPUT_RATIO, figures
    assert median < MAX_MEDIAN_SCRAPE_S, figures
    assert slowest < MAX_SCRAPE_S, figures


def test_a_scrape_is_answered_while_every_worker_is_busy(stack):
    """16 x 1 s requests hold every worker of both replicas (10 in all);
    the metrics still answer, within Prometheus's scrape timeout, and count
    them in flight."""
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
    # 0.3 s measured on a 2-core machine, docker exec included.
    assert took < MAX_SCRAPE_S, f"{took:.1f} s"
    assert in_flight == config["max_concurrent_requests"], "every worker of the scraped replica was busy"
