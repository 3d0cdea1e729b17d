"""Apply the app's pending migrations with the app's own tool:
`python -m serving.migrate`.

`make up` and `make deploy` run it once, in a one-off container of the new
image, before any replica of it starts (scripts/prepare-database.sh): not
per replica, not per worker. The tool is the app's own, found in this order:

1. `flask db upgrade`: Flask-Migrate's, which an app that uses it already
   has, or a `db upgrade` command of the app's own (the demo's,
   demo/factory.py);
2. `alembic upgrade head`, with the app's Alembic configuration: the file
   ALEMBIC_CONFIG names (Alembic's own variable, set in `.env`), or
   `alembic.ini` in the app's directory.

An app with neither has nothing to migrate. It runs in this process, on the
app APP_MODULE names, loaded as the workers load it (serving/app.py), so its
URL reaches the database with the secret's password.

A failure exits non-zero, the deploy stops, and the old replicas keep
serving. The revision that failed is named: by the command itself where it
exits with its status (Flask-Migrate logs Alembic's error after Alembic's
"Running upgrade A -> B" line), or here, from that line, for an error it
lets out (a failing statement).
"""

from __future__ import annotations

import logging
import os
import sys

#: Alembic's own variable naming its configuration file.
ALEMBIC_CONFIG = "ALEMBIC_CONFIG"
#: Alembic's logger of each step it starts.
ALEMBIC_STEPS = "alembic.runtime.migration"


class StepRecorder(logging.Handler):
    """Remembers the last "Running upgrade A -> B, doc" Alembic logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Running upgrade"):
            self.last = message.removeprefix("Running upgrade ").strip()


def upgrade_command(app):
    """The app's `db upgrade` click command, or None."""
    group = app.cli.commands.get("db")
    commands = getattr(group, "commands", {})
    return commands.get("upgrade")


def alembic_config() -> str | None:
    """The app's Alembic configuration file: ALEMBIC_CONFIG's, or alembic.ini here."""
    path = os.environ.get(ALEMBIC_CONFIG) or "alembic.ini"
    return path if os.path.isfile(path) else None


def main() -> int:
    from serving.app import AppLoadError, flask_app, load
    from serving.settings import SettingsError, current

    try:
        loaded = load(current())
    except (AppLoadError, SettingsError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    app = flask_app(loaded)
    if app is not None and upgrade_command(app) is not None:
        from flask.cli import ScriptInfo

        script = ScriptInfo(create_app=lambda: app)
        return run(lambda: app.cli.main(["db", "upgrade"], prog_name="flask", obj=script, standalone_mode=False))
    ini = alembic_config()
    if ini is not None:
        from alembic import command
        from alembic.config import Config

        def upgrade() -> None:
            if app is None:
                command.upgrade(Config(ini), "head")
                return
            with app.app_context():  # an env.py that reads current_app finds it
                command.upgrade(Config(ini), "head")

        return run(upgrade)
    print(
        "the app has no `flask db upgrade` command (Flask-Migrate, or its own) and no Alembic configuration "
        f"({ALEMBIC_CONFIG}, or alembic.ini): nothing to migrate"
    )
    return 0


def run(upgrade) -> int:
    """Run the upgrade, naming the revision that failed in one line."""
    steps = StepRecorder()
    alembic_log = logging.getLogger(ALEMBIC_STEPS)
    alembic_log.addHandler(steps)
    alembic_log.setLevel(logging.INFO)
    try:
        upgrade()
    except SystemExit as exc:
        # The command said why itself: Flask-Migrate logs Alembic's error
        # after its "Running upgrade A -> B" line; the demo's prints its line.
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - any failure is one line naming the revision
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"revision {steps.last}" if steps.last else "before any revision ran"
        print(f"migration failed: {where}: {type(exc).__name__}: {cause}", file=sys.stderr)
        return 1
    finally:
        alembic_log.removeHandler(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
