"""What every layer of the suite shares.

The internals contract (tests/unit/test_internals.py) runs first, and a
broken entry stops the run there: its one line names the internal and the
file to review, where the timing tests that would notice it later would only
say "3 rounds instead of 2"."""

from __future__ import annotations

import pytest

CONTRACT = "tests/unit/test_internals.py"


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(CONTRACT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.nodeid.startswith(f"{CONTRACT}::test_every_internal_holds"):
        item.session.shouldstop = "gunicorn's or gevent's internals no longer hold what serving/ relies on (above)"
