"""The rooms: the app a fork owns (its own package; here the demo, demo/) and
the server that runs it (serving/). Read from the imports each file writes,
not from a list kept by hand, so that a fork's new modules are held to the
same rule."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from werkzeug.test import Client

from demo.factory import create_app
from harness.stack import REPO
from serving import metrics_master, settings
from serving.app import answer_errors_in_json
from serving.middleware import wrap

pytestmark = pytest.mark.unit

#: The app the server serves by default, which it names only through APP_MODULE.
APP_PACKAGE = "demo"
#: The server's own machinery, which the app never needs.
SERVER_LIBRARIES = ("serving", "gunicorn", "gevent", "prometheus_client", "pythonjsonlogger")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in `path`, `from X import Y` as X.Y too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def package_files(name: str) -> list[Path]:
    files = sorted((REPO / name).glob("**/*.py"))
    assert files, f"no {name}/ package"
    return files


def test_the_app_imports_nothing_of_the_server():
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in package_files(APP_PACKAGE)
        for line, module in imports(path)
        if any(within(module, library) for library in SERVER_LIBRARIES)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_server_imports_nothing_of_the_app_by_name():
    """serving/ reaches the app only through APP_MODULE (serving/app.py loads
    whatever it names): no file of it imports the demo, so a fork that
    deletes the demo's package leaves the server whole."""
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in package_files("serving")
        for line, module in imports(path)
        if within(module, APP_PACKAGE)
    ]
    assert not wrong, "\n".join(wrong)
    assert settings.load({}, cpus=1).app_module.startswith(f"{APP_PACKAGE}.")


def test_the_rule_catches_a_stray_import(tmp_path):
    """The check itself can fail: a line such as a fork might add is found."""
    stray = tmp_path / "views.py"
    stray.write_text("from serving.request_id import current\nimport gunicorn\nfrom flask import g\n")
    found = [module for _, module in imports(stray)]
    assert any(within(m, "serving") for m in found) and "gunicorn" in found


# --- the README's walk of one request, the app's side ------------------------------

README = (REPO / "README.md").read_text()


def readme_files(marker: str) -> set[str]:
    """The project's Python files a README section between <!-- marker -->
    and <!-- /marker --> names."""
    section = README.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
    return set(re.findall(r"`((?:demo|serving)/[\w/]+\.py)`", section))


def test_the_readme_walks_get_slash_through_the_files_it_runs(monkeypatch):
    """What runs for `GET /` with the defaults (metrics on), traced: every
    project file whose code runs is named, and nothing else is."""
    monkeypatch.setattr(metrics_master, "enabled", lambda port: True)
    app = create_app()
    answer_errors_in_json(app)
    served = Client(wrap(app, settings.load({}, cpus=1)))
    ran: set[str] = set()

    def profile(frame, event, arg) -> None:
        path = Path(frame.f_code.co_filename)
        if event == "call" and path.is_relative_to(REPO) and path.parts[len(REPO.parts)] in (APP_PACKAGE, "serving"):
            ran.add(path.relative_to(REPO).as_posix())

    sys.setprofile(profile)
    try:
        response = served.get("/")
    finally:
        sys.setprofile(None)
    assert response.status_code == 200
    assert ran == readme_files("app-walk")


#: Imported as gunicorn imports them at start: its config file (and the
#: logging it configures), then the app in a worker.
AS_GUNICORN_STARTS = """
import logging.config, sys
import serving.serve
import serving.gunicorn_conf as conf
logging.config.dictConfig(conf.logconfig_dict)
import serving.wsgi
print(*sorted(m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)), sep="\\n")
"""


def test_the_readme_names_every_file_the_start_loads(helpers, env_factory):
    result = helpers.run_python(["-c", AS_GUNICORN_STARTS], env_factory(METRICS_PORT="0"))
    assert result.returncode == 0, result.stderr
    loaded = {
        Path(line).relative_to(REPO).as_posix()
        for line in result.stdout.splitlines()
        if Path(line).is_relative_to(REPO) and Path(line).relative_to(REPO).parts[0] in (APP_PACKAGE, "serving")
    }
    loaded -= {"demo/__init__.py", "serving/__init__.py"}  # the packages' docstrings
    assert loaded == readme_files("app-setup")


def serving_import_graph() -> dict[str, set[str]]:
    """serving's module -> the serving modules it imports, at any depth of its
    code (a function's own imports count: they run)."""
    graph: dict[str, set[str]] = {}
    for path in package_files("serving"):
        name = "serving." + path.relative_to(REPO / "serving").with_suffix("").as_posix().replace("/", ".")
        modules = {module for _, module in imports(path) if within(module, "serving")}
        # `from serving import x` names the module serving.x.
        graph[name] = {m for m in modules if (REPO / (m.replace(".", "/") + ".py")).exists()} - {name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph`, or []."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_server_has_no_import_circle():
    assert cycle(serving_import_graph()) == []


def test_the_circle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []
