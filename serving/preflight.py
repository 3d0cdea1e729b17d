"""The preflight: what no production app should run with, checked on the
loaded app before its first request. `make check` (which `make up` and
`make deploy` run) loads the app in a throwaway container, so a refusal
stops the start with its one line while the running stack keeps serving;
a worker that loads such an app stops gunicorn the same way.

Each refusal names what to change:
- debug mode (Werkzeug's debugger runs code a client sends it);
- a SECRET_KEY in force that is short, or a string written in the app's own
  source (the fallback of `os.environ.get("SECRET_KEY", "dev")`), which
  anyone who reads the code can sign sessions with;
- under gevent, a database driver that blocks the loop: psycopg2 without
  psycogreen's wait callback, or mysqlclient;
- the development server started from the app's module (serving/app.py
  refuses it while the module is imported).
"""

from __future__ import annotations

import sys
from pathlib import Path

from serving.settings import Settings

#: Shortest secret key accepted: 32 characters (Flask's docs make theirs
#: with secrets.token_hex(), 64).
SECRET_KEY_MIN_LENGTH = 32
#: The server's own code: not the app's source.
SERVER_PACKAGE = Path(__file__).resolve().parent


def app_source_files(root: Path | None = None) -> list[Path]:
    """The source of every module loaded from the app's directory (the
    working directory, where the image puts the fork's code), but the
    server's own: the app's package, its config module, whatever it imported
    of its own."""
    root = (root or Path.cwd()).resolve()
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        resolved = Path(path).resolve()
        if resolved.is_relative_to(root) and not resolved.is_relative_to(SERVER_PACKAGE):
            files.add(resolved)
    return sorted(files)


def secret_key_refusal(secret_key: object, sources: list[Path]) -> str | None:
    if secret_key is None:
        return None  # no sessions signed: nothing to guess
    key = secret_key.decode() if isinstance(secret_key, bytes) else str(secret_key)
    for path in sources:
        if key in path.read_text(encoding="utf-8", errors="replace"):
            return (
                f"the SECRET_KEY in force is written in the app's source ({path.name}): anyone who reads the code can "
                "sign its sessions. Serve it with the secret file (SECRET_KEY_FILE, made by make up), which the "
                "server puts in SECRET_KEY"
            )
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return (
            f"the SECRET_KEY in force is {len(key)} characters long: use at least {SECRET_KEY_MIN_LENGTH} "
            "(the secret file make up makes has 64)"
        )
    return None


def blocking_driver_refusals(worker_class: str) -> list[str]:
    """Under gevent, the database drivers loaded that would block every
    greenlet of the worker while one waits on the database."""
    if worker_class != "gevent":
        return []
    found = []
    psycopg2 = sys.modules.get("psycopg2.extensions")
    if psycopg2 is not None and psycopg2.get_wait_callback() is None:
        found.append(
            "psycopg2 blocks gevent's loop while it waits on the database: call "
            "psycogreen.gevent.patch_psycopg() where the app starts, or use psycopg 3 (postgresql+psycopg://)"
        )
    if "MySQLdb" in sys.modules:
        found.append(
            "mysqlclient (MySQLdb) blocks gevent's loop while it waits on the database: use PyMySQL "
            "(mysql+pymysql://), which gevent's patching makes cooperative"
        )
    return found


def refusals(app, settings: Settings) -> list[str]:
    """What the loaded app must not be served with; empty when it may."""
    found = []
    config = getattr(app, "config", None)
    if isinstance(config, dict):  # a Flask app
        if getattr(app, "debug", False):
            found.append(
                "the app runs in debug mode (DEBUG / FLASK_DEBUG): turn it off; the debugger runs code "
                "a client sends it"
            )
        refusal = secret_key_refusal(config.get("SECRET_KEY"), app_source_files())
        if refusal:
            found.append(refusal)
    found += blocking_driver_refusals(settings.worker_class)
    return found
