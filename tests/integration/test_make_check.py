"""Every variable of the README's table, given one bad value, is refused
before anything starts, with one line naming it and its value: here the
doors that need the images (nginx's entrypoint, the base images), and
`make check`, which `make up` and `make deploy` run, once per door
(tests/settings_door.py; the others: tests/unit/test_settings_door.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from harness.stack import REPO, Stack, project_containers
from tests.settings_door import BAD_VALUES, assert_one_line_naming, by_door

pytestmark = pytest.mark.integration

PROJECT = "door"


@pytest.fixture(scope="module")
def door(built_images):
    """A stack that is never started: its project's networks, which
    `compose run` makes, go at the end."""
    stack = Stack(PROJECT)
    try:
        yield stack
    finally:
        stack.down()


@pytest.mark.parametrize(("name", "bad", "needs"), by_door("nginx"), ids=lambda v: v if isinstance(v, str) else "")
def test_nginx_refuses_a_bad_value_naming_it(door, name, bad, needs):
    # What `make check` runs: nginx's entrypoint hooks, then `nginx -t`, in
    # a throwaway container of the image, with Compose's environment.
    result = door.compose(
        "run", "--rm", "--no-deps", "-T", "nginx", "nginx", "-t", "-q", "-e", "stderr", env={**needs, name: bad}
    )
    assert result.returncode == 2, result.stderr
    assert_one_line_naming(result.stderr, name, bad)


@pytest.mark.parametrize(("name", "bad", "needs"), by_door("base image"), ids=lambda v: v if isinstance(v, str) else "")
def test_a_base_image_that_cannot_be_had_is_refused_naming_it(built_images, name, bad, needs):
    result = subprocess.run(
        [REPO / "scripts" / "ensure-base-images.sh", "monitoring"],
        env={**os.environ, **needs, name: bad},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert_one_line_naming(result.stderr, name, bad)


#: One variable of each door, through `make check` as a user runs it.
THROUGH_MAKE_CHECK = ["APP_MEMORY", "TLS_CERT_FILE", "WORKER_CLASS", "DEMO_MAX_WORK_MS", "NGINX_RATE_LIMIT"]


@pytest.mark.parametrize("name", THROUGH_MAKE_CHECK)
def test_make_check_refuses_a_bad_value_of_each_door_and_starts_nothing(door, name):
    _, bad, needs = BAD_VALUES[name]
    result = subprocess.run(
        ["make", "--no-print-directory", "check"],
        cwd=REPO,
        env={**os.environ, **door.cli_environment(), **needs, name: bad},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert_one_line_naming(result.stderr, name, bad)
    assert project_containers(door.project) == []


def test_make_check_passes_the_defaults(door):
    result = subprocess.run(
        ["make", "--no-print-directory", "check"],
        cwd=REPO,
        env={**os.environ, **door.cli_environment()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert project_containers(door.project) == []
