"""The lab's mixed scenario: users of a typical API, most requests cheap, some
waiting on I/O, a few burning CPU, with think time between requests. The
offered load is set by the number of users, so a server that keeps up shows
it in low latency, and one that cannot in both throughput and latency.

The paths, weights and think time come from the environment (BENCH_MIX,
BENCH_THINK), which the lab (bench/lab.py) sets from the mixed workload
defined in bench/matrix.py.
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, between, task

#: [[path, weight], ...]
MIX = json.loads(os.environ.get("BENCH_MIX", '[["/healthz", 1]]'))
PATHS = [path for path, _ in MIX]
WEIGHTS = [weight for _, weight in MIX]
THINK = [float(x) for x in os.environ.get("BENCH_THINK", "0.5,1.0").split(",")]


class MixedUser(FastHttpUser):
    wait_time = between(*THINK)
    # Like wrk in the lab: a slow answer is slow, not failed.
    network_timeout = 60.0
    connection_timeout = 60.0

    @task
    def mixed(self):
        (path,) = random.choices(PATHS, weights=WEIGHTS)
        # Stats per endpoint, whatever the query string.
        with self.client.get(path, name=path.split("?")[0], catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
