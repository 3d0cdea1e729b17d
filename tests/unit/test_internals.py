"""The internals of gunicorn, gevent and prometheus_client that serving/
stands on (serving/internals.py), checked against what is installed. This
module runs first (tests/conftest.py), and a broken entry stops the run."""

from __future__ import annotations

import ast
import re
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


def names_in_code(path: Path) -> set[str]:
    """The names a module's code uses, not its comments or docstrings: what
    it reads (names, attributes, imports), what it defines (an override is a
    use), and identifiers it passes as strings (getattr(obj, "_do_read"))."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.update(node.name.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)
    return names


@pytest.mark.parametrize("internal", internals.INTERNALS, ids=lambda i: f"{i.name} {i.expect[:30]}")
def test_each_entry_names_a_file_that_relies_on_it(internal):
    # The file to review either uses it in its code (its last part and, for a
    # class's attribute, the class), or names it whole, owner and all
    # (`ThreadWorker.run`, `flask.cli`): a behaviour relied on, said where.
    path = REPO / internal.relied_on_by
    *owners, leaf = internal.name.split(".")
    used = names_in_code(path)
    in_code = leaf in used and (not owners[-1][:1].isupper() or owners[-1] in used)
    named = re.search(rf"(?<![\w.]){re.escape(owners[-1])}\.{re.escape(leaf)}(?!\w)", path.read_text())
    assert in_code or named, (internal.name, internal.relied_on_by)


def test_a_name_in_a_comment_or_docstring_is_not_a_use(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('''"""Relies on ThreadWorker.enqueue_req."""
# and on GeventWorker.handle_request
x = getattr(object, "_do_read")
''')
    assert names_in_code(module) == {"x", "getattr", "object", "_do_read"}


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
