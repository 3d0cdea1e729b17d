"""Werkzeug's development server, for local development only.

    APP_ENV=development python -m serving.devserver [--threaded|--no-threaded] [--processes N]

It serves the app APP_MODULE names inside the server's layers, the same
WSGI stack gunicorn serves (serving/wsgi.py), so that the lab compares the
servers alone; it refuses unless APP_ENV=development (serving/devguard.py). The production
image never runs it; the benchmark lab runs it (inside the compose network
only) to measure the configurations the Flask docs and the seed write-ups
describe: threaded=False, threaded=True, threaded=False with processes=3.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threaded", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    if args.processes > 1 and args.threaded:
        # Werkzeug serves either a thread or a process per request, not both.
        parser.error("--processes > 1 needs --no-threaded")
    import werkzeug.serving

    from serving.devguard import DevServerRefused
    from serving.wsgi import application  # the app inside the server's layers, as gunicorn serves it

    try:
        # Looked up here, where serving/devguard.py put its refusal outside development.
        werkzeug.serving.run_simple(args.host, args.port, application, threaded=args.threaded, processes=args.processes)
    except DevServerRefused as exc:  # outside development
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
