"""serving.serve, the container's command: the settings read once and
checked before gunicorn starts, in the same process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.unit.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

#: serve.main(), with serving.settings.load counted: each call prints a line.
COUNTING_SERVE = """
import sys
from serving import serve, settings
load = settings.load
def counted(*args, **kwargs):
    print("settings.load", file=sys.stderr, flush=True)
    return load(*args, **kwargs)
settings.load = counted
sys.exit(serve.main())
"""


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WEB_CONCURRENCY", "abc"), ("WEB_CONCURRENCY", "2.5"), ("WORKER_CLASS", "eventlet")],
)
def test_bad_value_exits_2_with_one_line_naming_the_variable(helpers, env_factory, variable, value):
    # gunicorn itself would die with a ValueError traceback on WEB_CONCURRENCY=abc.
    result = helpers.run_python(["-m", "serving.serve"], env_factory(**{variable: value}))
    assert result.returncode == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"configuration error: {variable}={value!r}")
    assert "Traceback" not in result.stderr


def test_the_app_refusing_a_setting_stops_the_start_with_one_line(helpers, env_factory):
    result = helpers.run_python(["-m", "serving.serve"], env_factory(DEMO_MAX_WORK_MS="soon", WEB_CONCURRENCY="1"))
    assert result.returncode != 0
    assert "configuration error: DEMO_MAX_WORK_MS='soon' is not valid" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_static_publish_dir_stops_the_start_with_one_line(helpers, env_factory, tmp_path):
    missing = tmp_path / "no-such-volume"
    result = helpers.run_python(["-m", "serving.serve"], env_factory(STATIC_PUBLISH_DIR=str(missing)))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"configuration error: STATIC_PUBLISH_DIR={str(missing)!r} is not a directory "
        "(docker-compose.yml mounts the `static` volume there)"
    )


def test_the_static_files_are_published_before_gunicorn_answers(helpers, env_factory, tmp_path):
    port = helpers.free_port()
    published = tmp_path / "static"
    published.mkdir()
    env = env_factory(
        WEB_CONCURRENCY="1", GUNICORN_BIND=f"127.0.0.1:{port}", METRICS_PORT="0", STATIC_PUBLISH_DIR=str(published)
    )
    with helpers.serving(["-m", "serving.serve"], env, tmp_path / "serve.log", port) as (_, body):
        assert body["status"] == "ok"
        assert (published / "demo.css").read_bytes() == (REPO_ROOT / "demo/static/demo.css").read_bytes()


def test_the_process_becomes_gunicorn_having_read_the_settings_once(helpers, env_factory, tmp_path):
    port = helpers.free_port()
    env = env_factory(WORKER_CLASS="gthread", WEB_CONCURRENCY="2", GUNICORN_BIND=f"127.0.0.1:{port}", METRICS_PORT="0")
    log = tmp_path / "serve.log"
    with helpers.serving(["-c", COUNTING_SERVE], env, log, port) as (proc, body):
        assert body["status"] == "ok"
        # The process the container started is gunicorn's master: its
        # children are the workers, and it logged the configuration it runs.
        assert len(helpers.children_of(proc.pid)) == 2
        # A worker serves a request (the settings it reads would be counted below).
        assert helpers.http_get_json(f"http://127.0.0.1:{port}/readyz")[0] == 200
        text = log.read_text()
    assert '"workers": 2' in text and '"worker_class": "gthread"' in text
    # Once, in this process: gunicorn's config and the forked workers find them.
    assert text.count("settings.load") == 1, text


def test_a_hup_reload_keeps_serving_on_the_same_address(helpers, env_factory, tmp_path):
    """`make reload-app` sends HUP to the container's command: gunicorn
    re-reads its command line and config, starts new workers and keeps its
    listening socket (a second bind to the default address would fail)."""
    port = helpers.free_port()
    env = env_factory(WORKER_CLASS="sync", WEB_CONCURRENCY="2", GUNICORN_BIND=f"127.0.0.1:{port}", METRICS_PORT="0")
    log = tmp_path / "serve.log"
    with helpers.serving(["-m", "serving.serve"], env, log, port) as (proc, _):
        before = set(helpers.children_of(proc.pid))
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not (set(helpers.children_of(proc.pid)) - before and len(helpers.children_of(proc.pid)) == 2):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert helpers.http_get_json(f"http://127.0.0.1:{port}/")[0] == 200
        assert not set(helpers.children_of(proc.pid)) & before, "the old workers are still there"
        assert proc.poll() is None
    assert "Connection in use" not in log.read_text()
