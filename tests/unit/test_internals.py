"""The internals of gunicorn, gevent and prometheus_client that serving/
stands on (serving/internals.py), checked against what is installed. This
module runs first (tests/conftest.py), and a broken entry stops the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import gunicorn
import pytest

from harness.stack import REPO
from serving import internals

pytestmark = pytest.mark.unit


def test_every_internal_holds():
    broken = internals.broken()
    assert not broken, "\n" + "\n".join(broken)


@pytest.mark.parametrize("internal", internals.INTERNALS, ids=lambda i: f"{i.name} {i.expect[:30]}")
def test_each_entry_names_a_file_that_uses_it(internal):
    source = (REPO / internal.relied_on_by).read_text()
    # The file to review names what it relies on (the last part of the name).
    leaf = internal.name.rsplit(".", 1)[-1]
    assert leaf in source or internal.name.split(".")[-2] in source, (internal.name, internal.relied_on_by)


@pytest.fixture(scope="module")
def scratch_gunicorn(tmp_path_factory) -> Path:
    """A copy of the installed gunicorn in which ThreadWorker.enqueue_req is
    renamed, as an upgrade might do."""
    root = tmp_path_factory.mktemp("scratch")
    copy = root / "gunicorn"
    shutil.copytree(Path(gunicorn.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    gthread = copy / "workers" / "gthread.py"
    source = gthread.read_text()
    assert source.count("def enqueue_req(") == 1
    gthread.write_text(source.replace("enqueue_req", "submit_request"))
    return root


def test_a_renamed_internal_fails_the_check_naming_it(helpers, env_factory, scratch_gunicorn):
    env = env_factory(PYTHONPATH=f"{scratch_gunicorn}:{REPO}")
    check = "from serving import internals; print(*internals.broken('gthread'), sep='\\n')"
    result = helpers.run_python(["-c", check], env)
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("gunicorn.workers.gthread.ThreadWorker.enqueue_req: missing; "), result
    assert "review serving/gthread_worker.py (or set GUNICORN_STOCK_WORKERS=true)" in lines[0]


def test_a_renamed_internal_stops_the_start_and_stock_workers_still_start(helpers, env_factory, scratch_gunicorn):
    load_config = ["-c", "import serving.gunicorn_conf as c; print(c.worker_class)"]
    env = env_factory(PYTHONPATH=f"{scratch_gunicorn}:{REPO}", WORKER_CLASS="gthread")
    refused = helpers.run_python(load_config, env)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("configuration error: gunicorn.workers.gthread.ThreadWorker.enqueue_req: missing; ")
    # The escape hatch: gunicorn's own class, whatever its internals became.
    stock = helpers.run_python(load_config, {**env, "GUNICORN_STOCK_WORKERS": "true"})
    assert (stock.returncode, stock.stdout.strip()) == (0, "gthread"), stock.stderr
    # A class whose internals the rename does not touch starts as before.
    gevent = helpers.run_python(load_config, {**env, "WORKER_CLASS": "gevent"})
    assert gevent.stdout.strip() == "serving.gevent_worker.BalancedGeventWorker", gevent.stderr


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (internals.method("gunicorn.util.write_error", "sock, status, reason", "x", "all", ""), "parameters are"),
        (internals.method("gunicorn.util.no_such_function", "sock", "x", "all", ""), "missing"),
        (internals.mentions("gunicorn.util.write_error", "no such text", "x", "all", ""), "no longer contains"),
        (internals.mentions("no_such_module.thing", "x", "x", "all", ""), "missing"),
    ],
)
def test_each_kind_of_check_can_fail(check, expected):
    assert check.problem().startswith(expected)
