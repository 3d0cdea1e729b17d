"""The two rooms: the app a fork owns (app/) and the server that runs it
(serving/). Read from the imports each file writes, not from a list kept by
hand, so that a fork's new modules are held to the same rule."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from werkzeug.test import Client

from app.factory import create_app
from harness.stack import REPO
from serving import metrics_master, settings
from serving.middleware import wrap

pytestmark = pytest.mark.unit

#: The one way in: the server imports the app's WSGI entry point, nothing else.
ENTRY_POINT = "app.wsgi"
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
        for path in package_files("app")
        for line, module in imports(path)
        if any(within(module, library) for library in SERVER_LIBRARIES)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_server_reaches_the_app_only_through_its_entry_point():
    reached = {}
    for path in package_files("serving"):
        for _, module in imports(path):
            if within(module, "app"):
                reached.setdefault(path.relative_to(REPO).as_posix(), set()).add(module)
    wrong = {
        path: modules for path, modules in reached.items() if modules != {ENTRY_POINT, f"{ENTRY_POINT}.application"}
    }
    assert not wrong, f"serving/ imports more of the app than {ENTRY_POINT}.application: {wrong}"
    # gunicorn's app and the lab's development server; nothing else knows the app's name.
    assert set(reached) == {"serving/wsgi.py", "serving/devserver.py"}


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
    return set(re.findall(r"`((?:app|serving)/[\w/]+\.py)`", section))


def test_the_readme_walks_get_slash_through_the_files_it_runs(monkeypatch):
    """What runs for `GET /` with the defaults (metrics on), traced: every
    project file whose code runs is named, and nothing else is."""
    monkeypatch.setattr(metrics_master, "enabled", lambda port: True)
    served = Client(wrap(create_app(), settings.load({}, cpus=1)))
    ran: set[str] = set()

    def profile(frame, event, arg) -> None:
        path = Path(frame.f_code.co_filename)
        if event == "call" and path.is_relative_to(REPO) and path.parts[len(REPO.parts)] in ("app", "serving"):
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
        if Path(line).is_relative_to(REPO) and Path(line).relative_to(REPO).parts[0] in ("app", "serving")
    }
    loaded -= {"app/__init__.py", "serving/__init__.py"}  # the packages' docstrings
    assert loaded == readme_files("app-setup")
