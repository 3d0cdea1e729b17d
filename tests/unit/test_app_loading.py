"""How the server loads the app APP_MODULE names (serving/app.py), hands it
its secrets the way it already reads them, and refuses what no production
app should run with (serving/preflight.py): on small apps written here, in
packages of their own, as a fork's would be, each loaded in a fresh Python
process as a worker loads it (`python -m serving.check`, which make check
runs)."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest

from serving import app as loading
from serving import preflight
from serving.settings import SettingsError, load

pytestmark = pytest.mark.unit

SECRET = "k" * 64

FACTORY_APP = """
import os

from flask import Flask


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or "you-will-never-guess"


def create_app(config_class=Config):
    app = Flask(__name__)
    app.config.from_object(config_class)

    @app.get("/")
    def index():
        return {"secret_key_length": len(app.config["SECRET_KEY"])}

    return app
"""


def write_package(root: Path, name: str, init: str) -> Path:
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(init))
    return package


def check(helpers, env_factory, cwd: Path, **env: str):
    """`python -m serving.check` (make check's) with the app in `cwd`."""
    environment = env_factory(PYTHONPATH=f"{cwd}{os.pathsep}{helpers.repo_root}", **env)
    return helpers.run_python(
        [
            "-c",
            f"import os; os.chdir({str(cwd)!r}); import runpy; runpy.run_module('serving.check', run_name='__main__')",
        ],
        environment,
    )


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "secret_key"
    path.write_text(SECRET + "\n")
    return path


# --- APP_MODULE -----------------------------------------------------------------


@pytest.mark.parametrize("spec", ["notes:create_app()", "notes.wsgi:application", "notes:create_app(None)"])
def test_app_module_takes_gunicorns_forms(spec):
    assert load({"APP_MODULE": spec}, cpus=1).app_module == spec


@pytest.mark.parametrize("spec", ["notes", "notes:", ":app", "notes:create_app(", "no tes:app", "notes/app.py:app"])
def test_a_malformed_app_module_is_one_line_naming_it(spec):
    with pytest.raises(SettingsError) as info:
        load({"APP_MODULE": spec}, cpus=1)
    assert str(info.value).startswith(f"APP_MODULE={spec!r} is not valid") and "\n" not in str(info.value)


def test_a_factory_app_is_served_with_the_secret_files_key(helpers, env_factory, tmp_path, secret_file):
    write_package(tmp_path, "notes", FACTORY_APP)
    result = check(helpers, env_factory, tmp_path, APP_MODULE="notes:create_app()", SECRET_KEY_FILE=str(secret_file))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["app_module"] == "notes:create_app()"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("missing_package:create_app()", "ModuleNotFoundError"),
        ("notes:no_such_factory()", "Failed to find attribute 'no_such_factory'"),
    ],
)
def test_an_app_that_cannot_be_loaded_stops_the_check_with_one_line(
    helpers, env_factory, tmp_path, secret_file, spec, fragment
):
    write_package(tmp_path, "notes", FACTORY_APP)
    result = check(helpers, env_factory, tmp_path, APP_MODULE=spec, SECRET_KEY_FILE=str(secret_file))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"configuration error: APP_MODULE={spec} cannot be loaded") and fragment in line, line


# --- the secrets, the way the app reads them ---------------------------------------


def test_the_secret_key_reaches_the_apps_environment_read(monkeypatch, secret_file):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    loading.bridge_secret_key(load({"SECRET_KEY_FILE": str(secret_file)}, cpus=1))
    assert os.environ["SECRET_KEY"] == SECRET


@pytest.mark.parametrize(("content", "problem"), [(None, "cannot be read"), ("", "is empty"), ("\n", "is empty")])
def test_a_missing_or_empty_secret_stops_the_start_naming_it(tmp_path, content, problem):
    path = tmp_path / "secret_key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError) as info:
        loading.bridge_secret_key(load({"SECRET_KEY_FILE": str(path)}, cpus=1))
    assert str(info.value).startswith(f"SECRET_KEY_FILE={str(path)!r} {problem}")


def test_the_database_password_is_libpqs_password_file_of_this_user_alone(monkeypatch, tmp_path):
    password = tmp_path / "db_password"
    password.write_text("pa:ss\\word\n")
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.setattr(loading.tempfile, "gettempdir", lambda: str(tmp_path))
    loading.bridge_database_password(load({"DATABASE_PASSWORD_FILE": str(password)}, cpus=1))
    written = Path(os.environ["PGPASSFILE"])
    # libpq reads `:` and `\` escaped, and ignores a file others may read.
    assert written.read_text() == "*:*:*:*:pa\\:ss\\\\word\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_a_pgpassfile_the_environment_names_is_left_alone(monkeypatch, tmp_path):
    password = tmp_path / "db_password"
    password.write_text("secret")
    monkeypatch.setenv("PGPASSFILE", "/elsewhere/pgpass")
    loading.bridge_database_password(load({"DATABASE_PASSWORD_FILE": str(password)}, cpus=1))
    assert os.environ["PGPASSFILE"] == "/elsewhere/pgpass"


# --- the preflight ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "env", "fragment"),
    [
        ("app.debug = True", {}, "debug mode"),
        ("app.config['SECRET_KEY'] = 'x' * 16", {}, "16 characters long"),
        # The fallback in the app's own config, with no secret file to replace it.
        ("", {"SECRET_KEY_FILE": ""}, "written in the app's source (__init__.py)"),
    ],
)
def test_the_preflight_refuses_a_hazard_with_one_line(
    helpers, env_factory, tmp_path, secret_file, change, env, fragment
):
    source = FACTORY_APP.replace("    return app\n", f"    {change}\n    return app\n") if change else FACTORY_APP
    write_package(tmp_path, "notes", source)
    environment = {"APP_MODULE": "notes:create_app()", "SECRET_KEY_FILE": str(secret_file), **env}
    result = check(helpers, env_factory, tmp_path, **{k: v for k, v in environment.items() if v})
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("preflight: ") and fragment in line, line


def test_the_development_server_started_at_import_is_refused_naming_the_fix(
    helpers, env_factory, tmp_path, secret_file
):
    write_package(tmp_path, "notes", FACTORY_APP + "\napp = create_app()\napp.run()\n")
    result = check(helpers, env_factory, tmp_path, APP_MODULE="notes:app", SECRET_KEY_FILE=str(secret_file))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "starts Werkzeug's development server when it is imported" in line
    assert "if __name__ == '__main__':" in line


def test_under_gevent_psycopg2_without_psycogreen_is_refused(monkeypatch):
    class Extensions:
        callback = None

        @classmethod
        def get_wait_callback(cls):
            return cls.callback

    monkeypatch.setitem(__import__("sys").modules, "psycopg2.extensions", Extensions)
    (refusal,) = preflight.blocking_driver_refusals("gevent")
    assert refusal.startswith("psycopg2 blocks gevent's loop") and "psycogreen" in refusal
    assert preflight.blocking_driver_refusals("gthread") == []
    Extensions.callback = object()  # psycogreen.gevent.patch_psycopg() sets one
    assert preflight.blocking_driver_refusals("gevent") == []


def test_under_gevent_mysqlclient_is_refused(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "MySQLdb", object())
    (refusal,) = preflight.blocking_driver_refusals("gevent")
    assert refusal.startswith("mysqlclient (MySQLdb) blocks gevent's loop") and "PyMySQL" in refusal


def test_a_long_secret_from_outside_the_source_passes(tmp_path):
    source = tmp_path / "config.py"
    source.write_text('SECRET_KEY = os.environ.get("SECRET_KEY") or "you-will-never-guess"\n')
    assert preflight.secret_key_refusal(SECRET, [source]) is None
    assert "written in the app's source (config.py)" in preflight.secret_key_refusal("you-will-never-guess", [source])
    assert preflight.secret_key_refusal(None, [source]) is None


def test_the_server_tells_the_app_its_worker_class_and_pool_before_importing_it(monkeypatch, tmp_path):
    # The app reads them as it is imported, as a factory sizing its pool would.
    write_package(
        tmp_path,
        "told_app",
        """
        import os

        from flask import Flask

        SEEN = {
            name: os.environ.get(name)
            for name in (
                "WORKER_CLASS", "GUNICORN_TIMEOUT", "DATABASE_POOL_SIZE", "DATABASE_POOL_TIMEOUT", "PGCONNECT_TIMEOUT"
            )
        }
        app = Flask(__name__)
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (
        "WORKER_CLASS",
        "GUNICORN_TIMEOUT",
        "DATABASE_POOL_SIZE",
        "DATABASE_POOL_TIMEOUT",
        "PGCONNECT_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("SECRET_KEY", "PGPASSFILE"):
        monkeypatch.delenv(name, raising=False)
    env = {"APP_MODULE": "told_app:app", "WORKER_CLASS": "gthread", "GUNICORN_THREADS": "6"}
    settings = load({**env, "DATABASE_POOL_TIMEOUT": "4", "DATABASE_CONNECT_TIMEOUT": "2"}, cpus=1)
    loading.load(settings)
    import told_app

    # The pool as the server resolved it: gthread's default, one per thread;
    # the connect timeout as libpq reads it.
    told = {
        "WORKER_CLASS": "gthread",
        "GUNICORN_TIMEOUT": "30",
        "DATABASE_POOL_SIZE": "6",
        "DATABASE_POOL_TIMEOUT": "4",
    }
    assert told_app.SEEN == {**told, "PGCONNECT_TIMEOUT": "2"}
    assert loading.told(settings) == told
