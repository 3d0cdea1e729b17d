"""make test's phases (tests/conftest.py's PHASES): together they run every
test a plain `pytest` runs, each exactly once; the modules that read overlap
or speed (marked `timing`) are never in the phase that runs modules side by
side; and the Makefile runs the phases in PHASES' order."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.stack import REPO
from tests.conftest import PHASES

pytestmark = pytest.mark.unit


def collected(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="module")
def by_phase() -> dict[str | None, list[str]]:
    names = [None, *PHASES]
    with ThreadPoolExecutor(len(names)) as pool:
        runs = pool.map(lambda name: collected(*(["--phase", name] if name else [])), names)
        return dict(zip(names, runs, strict=True))


def test_the_phases_run_every_test_of_the_default_run_exactly_once(by_phase):
    everything = by_phase.pop(None)
    in_phases = [test for tests in by_phase.values() for test in tests]
    assert len(in_phases) == len(set(in_phases)), "a test is in two phases"
    assert sorted(in_phases) == sorted(everything)


def test_a_timing_module_never_runs_beside_another(by_phase):
    timing = {test.split("::", 1)[0] for test in collected("-m", "timing")}
    assert timing, "no module is marked timing"
    modules = {phase: {test.split("::", 1)[0] for test in tests} for phase, tests in by_phase.items() if phase}
    assert timing <= modules["timing"]
    assert not timing & modules["stacks"]
    # The phase beside it holds whole modules only: --dist loadfile runs a module on one worker.
    assert not modules["stacks"] & (modules["unit"] | modules["timing"] | modules["swarm"])


def test_make_test_runs_the_phases_in_their_order():
    recipe = re.search(r"^test:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    assert re.findall(r"--phase (\w+)", recipe) == list(PHASES)
    assert re.search(r"--phase stacks -n \$\(TEST_WORKERS\) --dist loadfile", recipe)
