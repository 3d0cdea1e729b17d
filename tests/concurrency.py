"""Fire requests at a stack at the same moment and read, from the server's own
timestamps, how many were in progress at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class Result:
    status: int
    body: dict
    client_seconds: float  # what the client waited, queueing included

    @property
    def interval(self) -> tuple[float, float]:
        return self.body["started_at"], self.body["finished_at"]


def fire(url: str, count: int, timeout: float = 60) -> list[Result]:
    """GET `url` from `count` threads released together."""
    barrier = threading.Barrier(count)

    def one(_: int) -> Result:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            started = time.monotonic()
            response = session.get(url, timeout=timeout)
            waited = time.monotonic() - started
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        return Result(response.status_code, body, waited)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals in progress at one instant (an end and a start at
    the same instant do not overlap)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def rounds(results: list[Result]) -> int:
    """How many requests ran one after another on the same slot, at most: the
    longest chain of requests each of which started only once the one before
    it had finished. A burst of twice the design figure that ran as designed
    is 2 (every slot took one request, then one more); a slot that queued a
    third while another sat idle makes it 3. Read from the server's own
    timestamps, not from gaps between them, so a loaded machine, where the
    second wave starts the instant the first ends, counts the same."""
    intervals = sorted(r.interval for r in results)
    chain: list[int] = []
    for i, (start, _) in enumerate(intervals):
        before = [chain[j] for j in range(i) if intervals[j][1] <= start]
        chain.append(1 + max(before, default=0))
    return max(chain, default=0)


def cpu_parallelism(results: list[Result]) -> float:
    """CPU time the requests burnt, divided by the wall time they spanned:
    how many cores' worth of Python ran at once."""
    cpu_seconds = sum(r.body["ms"] for r in results) / 1000
    span = max(r.body["finished_at"] for r in results) - min(r.body["started_at"] for r in results)
    return cpu_seconds / span
