"""The container's command: check the settings, then become gunicorn.

    python3 -m app.serve

gunicorn parses WEB_CONCURRENCY itself while it imports, before it reads its
config file, and dies with a traceback on anything but an integer (Compose
passes an unset variable as an empty string). So the settings are checked
here first, the message names the variable, and gunicorn gets the
normalised value. exec keeps gunicorn as PID 1, so it receives Docker's
signals directly.
"""

from __future__ import annotations

import os
import sys

from app.settings import SettingsError, load

# This interpreter's gunicorn, whatever PATH says.
GUNICORN_ARGV = [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf"]


def gunicorn_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment gunicorn starts with: WEB_CONCURRENCY resolved."""
    settings = load(environ)
    return {**environ, "WEB_CONCURRENCY": str(settings.workers)}


def main() -> int:
    try:
        env = gunicorn_environment(dict(os.environ))
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    os.execve(GUNICORN_ARGV[0], GUNICORN_ARGV, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
