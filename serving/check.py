"""`python -m serving.check`: check the server's settings, then the app (by
loading it as a worker does, serving/wsgi.py: its own settings are read as
it is made, and the preflight runs), and print the settings gunicorn would
start with, as JSON; exit 2 with one line otherwise. `make up`, `make
deploy` and `make swarm-up` run it first, in a throwaway container of the
new image, so that a bad value or an app that cannot be served fails fast,
before anything running changes."""

from __future__ import annotations

import json
import sys

from gunicorn.errors import AppImportError

from serving.settings import SettingsError, current


def main() -> int:
    try:
        settings = current()
        import serving.wsgi  # noqa: F401 - the app is loaded and made, and the preflight run, as in a worker
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except AppImportError as exc:  # serving/wsgi.py: one line saying why the app cannot be served
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - whatever stops the app loading stops the start
        print(f"the app failed to load: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(settings.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
