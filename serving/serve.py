"""The container's command: read the settings once, then run gunicorn in
this same process (PID 1, so it receives Docker's signals directly).

    python3 -m serving.serve

gunicorn parses WEB_CONCURRENCY itself when it is imported, before it reads
its config file, and dies with a traceback on anything but an integer
(Compose passes an unset variable as an empty string). So the settings are
read and checked here first, the message names the variable, and gunicorn
is imported only then, finding the normalised value. Its config
(serving/gunicorn_conf.py) takes the settings read here instead of reading
them again.
"""

from __future__ import annotations

import os
import subprocess
import sys

from serving.settings import SettingsError, current

#: gunicorn's command line: its config file names everything else.
GUNICORN_ARGV = ["gunicorn", "-c", "python:serving.gunicorn_conf"]


def main() -> int:
    try:
        settings = current()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    if settings.static_publish_dir:
        if not os.path.isdir(settings.static_publish_dir):
            print(
                f"configuration error: STATIC_PUBLISH_DIR={settings.static_publish_dir!r} is not a directory "
                "(docker-compose.yml mounts the `static` volume there)",
                file=sys.stderr,
                flush=True,
            )
            return 2
        # The release's static files where nginx serves them, before gunicorn
        # answers (serving/static.py); in a process of its own, which may
        # import the app as the master must not.
        published = subprocess.run(
            [sys.executable, "-m", "serving.static", "publish", settings.static_publish_dir], check=False
        )
        if published.returncode:
            print("the static files could not be published: the start stops here", file=sys.stderr, flush=True)
            return published.returncode
    os.environ["WEB_CONCURRENCY"] = str(settings.workers)
    sys.argv = list(GUNICORN_ARGV)
    from gunicorn.app.wsgiapp import WSGIApplication  # reads WEB_CONCURRENCY as it is imported

    # sys.argv stays gunicorn's: a HUP reload parses it again. (A USR2
    # binary upgrade, which re-execs the interpreter with it, is not for
    # containers: `make deploy` replaces them.)
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
    return 0  # gunicorn exits the process itself


if __name__ == "__main__":
    sys.exit(main())
