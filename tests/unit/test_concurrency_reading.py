"""How the integration tests read concurrency from the server's timestamps
(tests/concurrency.py): on made-up intervals, so that a reading that would
miscount a loaded machine's burst fails here, not as a flaky stack test."""

from __future__ import annotations

import pytest

from tests.concurrency import Result, max_overlap, rounds

pytestmark = pytest.mark.unit


def served(*intervals: tuple[float, float]) -> list[Result]:
    return [Result(200, {"started_at": start, "finished_at": end}, end - start) for start, end in intervals]


def test_a_second_wave_that_starts_as_the_first_ends_is_still_the_second_round():
    # A loaded machine: no gap between the waves, and ragged ends within each.
    burst = served(
        *[(0.00 + i * 0.01, 1.00 + i * 0.05) for i in range(4)],
        *[(1.00 + i * 0.05, 2.00 + i * 0.05) for i in range(4)],
    )
    assert max_overlap([r.interval for r in burst]) == 4
    assert rounds(burst) == 2


def test_a_slot_that_queues_a_third_request_makes_a_third_round():
    # Two slots, four requests: one slot ran three in turn while the other ran one.
    burst = served((0, 1), (0, 1), (1, 2), (2, 3))
    assert max_overlap([r.interval for r in burst]) == 2
    assert rounds(burst) == 3


def test_requests_that_all_overlap_are_one_round():
    assert rounds(served((0, 1), (0.1, 1.2), (0.2, 0.9))) == 1
    assert rounds([]) == 0
