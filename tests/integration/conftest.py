from __future__ import annotations

import pytest

from harness.stack import Stack, scrub_environment


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment():
    scrub_environment()


@pytest.fixture(scope="session")
def built_images():
    """Build the images once per test session, from the working tree: a stale
    image from an earlier `make up` must not stand in for the code under test."""
    Stack("build").build()


@pytest.fixture(scope="session")
def stack(built_images):
    """The stack in its default configuration, as `make up` starts it."""
    default = Stack("default")
    try:
        yield default.up()
    finally:
        default.down()
