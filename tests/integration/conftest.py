from __future__ import annotations

import pytest

from harness.stack import SharedStacks, Stack, machine_set_up, scrub_environment

_SHARED = pytest.StashKey["SharedStacks"]()


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment():
    scrub_environment()


@pytest.fixture(scope="session")
def built_images():
    """Build the images once per test session, from the working tree: a stale
    image from an earlier `make up` must not stand in for the code under test.
    One worker of the stack phase at a time: the next one's build is cached."""
    build = Stack("build")
    with machine_set_up():
        build.build()


@pytest.fixture(scope="session")
def stack(built_images):
    """The stack in its default configuration, as `make up` starts it."""
    default = Stack("default")
    try:
        yield default.up()
    finally:
        default.down()


@pytest.fixture(scope="session")
def shared_stacks(built_images, request) -> SharedStacks:
    """Stacks by configuration for the whole run (harness.stack.SharedStacks),
    stopped after the last test that uses them (below)."""
    stacks = request.session.stash.setdefault(_SHARED, SharedStacks())
    yield stacks
    stacks.close()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    stacks = item.session.stash.get(_SHARED, None)
    if stacks is None:
        return
    users = [each for each in item.session.items if "shared_stacks" in getattr(each, "fixturenames", ())]
    if users and item is users[-1]:
        stacks.close()
