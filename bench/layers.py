"""What the server's layers cost each request, in CPU time, in-process:

    python -m bench.layers [--requests N] [--rounds R]

The demo's `GET /` three ways, each in a fresh process of its own (metrics
connect to Flask's signals once per process, for good), alternating round
by round so that the machine's other work falls on all three alike:

- `alone`: the app's WSGI callable, nothing around it;
- `layers`: inside serving/middleware.py's layers, metrics off;
- `metrics`: the same with metrics on (prometheus_client, multiprocess).

It prints the least CPU microseconds per request of each, over the rounds,
and the two ratios to `alone`, which tests/bench/test_layers.py holds to the
figures measured before the server wrapped any app (175, 198 and 224 µs on
/healthz then, when health was still the app's own route).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

VARIANTS = ("alone", "layers", "metrics")
PATH = "/"


def _served(variant: str):
    from demo.factory import create_app
    from serving import metrics_master, settings
    from serving.app import answer_errors_in_json
    from serving.middleware import wrap

    app = create_app()
    answer_errors_in_json(app)
    if variant == "alone":
        return app
    if variant == "metrics":
        metrics_master.enabled = lambda port: True  # this process only
    return wrap(app, settings.load({"METRICS_PORT": "9100" if variant == "metrics" else "0"}, cpus=1))


def _run(variant: str, requests: int) -> float:
    """CPU µs per request of `variant`, after a warm-up, in this process."""
    from werkzeug.test import Client

    client = Client(_served(variant))

    def once() -> None:
        # Werkzeug's test client, as the figures this is held to were measured.
        client.get(PATH, headers={"X-Request-ID": "bench-layers-0001"}).close()

    for _ in range(200):
        once()
    started = time.process_time()
    for _ in range(requests):
        once()
    return (time.process_time() - started) / requests * 1e6


def measure(requests: int = 3000, rounds: int = 5) -> dict[str, float]:
    """The least CPU µs per request of each variant, over `rounds`: other
    work on a shared machine only ever adds to a run's CPU time (caches,
    frequency), so each variant's best run is its own cost."""
    figures: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as metrics_dir:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "APP_ENV": "production"}
        for key in ("DEMO_ENDPOINTS", "DATABASE_URL", "COMPOSE_PROFILES", "SECRET_KEY"):
            env.pop(key, None)
        for _ in range(rounds):
            for variant in VARIANTS:
                out = subprocess.run(
                    [sys.executable, "-m", "bench.layers", "--one", variant, "--requests", str(requests)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=300,
                ).stdout
                figures[variant].append(json.loads(out)["us"])
    return {variant: min(values) for variant, values in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps({"us": _run(args.one, args.requests)}))
        return 0
    least = measure(args.requests, args.rounds)
    for variant in VARIANTS:
        print(
            f"GET {PATH} {variant:8} {least[variant]:7.1f} µs CPU per request "
            f"({least[variant] / least['alone']:.2f}x alone)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
