from __future__ import annotations

import pytest

from harness.stack import scrub_environment


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment():
    """As the integration tests: nothing exported in the shell (WORKER_CLASS,
    TUNE_*, COMPOSE_FILE, ...) may change what the tune's stacks run."""
    scrub_environment("TUNE_")
