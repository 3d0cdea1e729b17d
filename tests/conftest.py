"""What every layer of the suite shares: the order the layers run in, and
the stop after the first layer that fails.

The layers run cheapest first, so that a unit failure is reported within
minutes, not after the integration suites: the internals contract
(tests/unit/test_internals.py), the unit tests, the browser tests (no
Docker), integration against real stacks, operations under load, then the
load test, the lab and tune, and Swarm last: leaving the swarm its tests
initialised breaks the embedded DNS of every container already running on
this engine (moby/moby#45144), among them the session's shared stacks, whose
nginx could no longer resolve `app`. A module
runs whole, at its earliest layer, so that its stacks come up once.

When a layer has failed, the run stops before the next one: its failures are
what to fix, and an hour of integration tests behind a broken unit would say
nothing more. A broken entry of the internals contract stops the run at once:
its one line names the internal and the file to review, where the timing
tests that would notice it later would only say "3 rounds instead of 2".

`make test` runs the same layers as four phases (PHASES, `--phase NAME`), a
pytest each, and stops after the first that fails: Swarm, beside the tests
without Docker (its swarm is left before any other stack starts, and
containers started after that resolve names); the stack tests, several
modules at once (pytest-xdist), since most of their time is spent waiting
on containers; the timing tests, alone, since what they measure is what a
neighbour would take. A plain `pytest` still runs every layer in order, one
test at a time, Swarm last."""

from __future__ import annotations

import pytest

CONTRACT = "tests/unit/test_internals.py"
_LAYER = pytest.StashKey[int]()
_FAILED = pytest.StashKey[set]()

#: (layer, the markers that put a test in it), in the order they run.
LAYERS = (
    ("the internals contract", ()),
    ("unit", ("unit",)),
    ("browser", ("browser",)),
    ("integration", ("integration",)),
    ("operations", ("operations",)),
    ("load test, lab and tune", ("loadtest", "bench", "tune", "soak")),
    ("swarm", ("swarm",)),
)


#: `make test`'s phases, in the order it runs them: which layers each holds.
#: The stack phase's modules run beside each other (pytest-xdist's `-n` with
#: `--dist loadfile`: a module whole on one worker, its stacks up once; each
#: worker has its own shared stacks); a module marked `timing` runs in the
#: timing phase, alone, whatever its layer.
PHASES = {
    # First, beside the unit phase (the Makefile): no other stack runs yet
    # when it leaves its swarm, and containers started later resolve names.
    "swarm": ("swarm",),
    "unit": ("the internals contract", "unit", "browser"),
    "stacks": ("integration", "operations", "load test, lab and tune"),
    "timing": ("integration", "operations", "load test, lab and tune"),
}


def pytest_addoption(parser):
    parser.addoption(
        "--phase",
        choices=tuple(PHASES),
        default=None,
        help="run one of make test's phases only (tests/conftest.py's PHASES); no test in it is a pass",
    )


def _phase(layer: int, timing: bool) -> str:
    if timing and LAYERS[layer][0] in PHASES["timing"]:
        return "timing"
    return next(name for name, layers in PHASES.items() if name != "timing" and LAYERS[layer][0] in layers)


def _own_layer(item: pytest.Item) -> int:
    if item.nodeid.startswith(CONTRACT):
        return 0
    markers = {mark.name for mark in item.iter_markers()}
    if "swarm" in markers:
        return len(LAYERS) - 1
    if "operations" in markers:
        return 4
    for index, (_, names) in enumerate(LAYERS[1:], start=1):
        if markers.intersection(names):
            return index
    return 5


def pytest_collection_modifyitems(config, items):
    # A module's layer is its earliest test's (the contract file's own: first).
    modules: dict[str, int] = {}
    sharing: set[str] = set()
    timing: set[str] = set()
    for item in items:
        module = _module(item)
        modules[module] = min(modules.get(module, len(LAYERS)), _own_layer(item))
        if "shared_stacks" in getattr(item, "fixturenames", ()):
            sharing.add(module)
        if item.get_closest_marker("timing"):
            timing.add(module)
    for item in items:
        item.stash[_LAYER] = modules[_module(item)]
    phase = config.getoption("phase")
    if phase is not None:
        in_phase = {item: _phase(item.stash[_LAYER], _module(item) in timing) == phase for item in items}
        config.hook.pytest_deselected(items=[item for item, chosen in in_phase.items() if not chosen])
        items[:] = [item for item, chosen in in_phase.items() if chosen]
    # The modules on the run's shared stacks (tests/integration/conftest.py)
    # run next to each other, last in the first layer that has one and first
    # in the later ones, so that the stacks idle as little as possible.
    first_sharing = min((modules[module] for module in sharing), default=None)

    def place(item: pytest.Item) -> tuple[int, int]:
        layer, module = item.stash[_LAYER], _module(item)
        if module not in sharing:
            return layer, 0
        return layer, 1 if layer == first_sharing else -1

    items.sort(key=place)  # stable: collection order otherwise


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_sessionfinish(session, exitstatus):
    # A phase that a -k or -m leaves empty has nothing to fail.
    if session.config.getoption("phase") is not None and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = item.session.testsfailed  # failures and errors so far
    yield
    if hasattr(item.config, "workerinput"):
        return  # a pytest-xdist worker runs part of one phase: make test stops after it
    layer = item.stash.get(_LAYER, len(LAYERS))
    failed = item.session.stash.setdefault(_FAILED, set())
    if item.session.testsfailed > before:
        failed.add(layer)
        if item.nodeid.startswith(f"{CONTRACT}::test_every_internal_holds"):
            item.session.shouldstop = "gunicorn's or gevent's internals no longer hold what serving/ relies on (above)"
    if nextitem is not None and failed and nextitem.stash.get(_LAYER, len(LAYERS)) != layer:
        names = ", ".join(LAYERS[index][0] for index in sorted(failed))
        item.session.shouldstop = f"a layer failed ({names}): the later layers were not run"
