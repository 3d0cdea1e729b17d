"""`make dev`: the stack with the source bind-mounted and gunicorn's --reload.
An edit to a view is served within seconds, with no rebuild, and it is still
gunicorn behind nginx on 127.0.0.1, never Werkzeug's development server."""

from __future__ import annotations

import shutil
import time

import pytest

from harness.stack import REPO, Stack

pytestmark = pytest.mark.integration

RELOAD_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def dev_stack(built_images, tmp_path_factory):
    # The dev overlay mounts the checkout at /srv; a second overlay mounts a
    # scratch copy of what the app runs from in its place, so that the test
    # edits a copy, never the repository.
    source = tmp_path_factory.mktemp("dev") / "checkout"
    for package in ("demo", "serving"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    source.chmod(0o755)
    overlay = source.parent / "scratch-source.yml"
    overlay.write_text(
        "services:\n"
        "  app:\n"
        f"    volumes: !override\n      - {source}:/srv:ro\n"
        "  nginx:\n"
        f"    volumes: !override\n      - {source / 'demo' / 'static'}:/usr/share/nginx/static:ro\n"
    )
    stack = Stack("dev", overlays=(REPO / "compose.dev.yml", overlay))
    try:
        yield stack.up(), source / "demo"
    finally:
        stack.down()


def test_an_edited_view_is_served_without_a_rebuild(dev_stack):
    stack, source = dev_stack
    assert stack.get("/").json() == {"service": "flask-concurrency", "status": "ok"}
    views = source / "views.py"
    views.write_text(views.read_text().replace('status="ok"', 'status="edited"'))
    edited = time.monotonic()
    while stack.get("/").json().get("status") != "edited":
        assert time.monotonic() - edited < RELOAD_TIMEOUT_S, "the edit was not served"
        time.sleep(0.5)
    print(f"\nedit served after {time.monotonic() - edited:.1f} s")


def test_an_edited_stylesheet_is_served_by_nginx_without_a_rebuild(dev_stack):
    stack, source = dev_stack
    # No image build ran flask-static-digest on the mounted source: pages
    # link the plain names, which nginx serves from the mount.
    page = stack.get("/demo")
    assert page.status_code == 200 and 'href="/static/demo.css"' in page.text, page.text
    stylesheet = source / "static" / "demo.css"
    stylesheet.write_text(stylesheet.read_text() + "\n/* edited in make dev */\n")
    response = stack.get("/static/demo.css")
    assert response.status_code == 200 and response.content.endswith(b"/* edited in make dev */\n")
    assert response.headers["Cache-Control"] == "public, max-age=300" and response.headers["ETag"]


def test_dev_mode_is_gunicorn_reloading_behind_nginx_on_loopback(dev_stack):
    stack, _ = dev_stack
    config = stack.effective_config()
    processes = stack.processes("app")
    assert any("gunicorn" in p["args"] for p in processes)
    assert not any("werkzeug" in p["args"].lower() or "serving.devserver" in p["args"] for p in processes)
    env = stack.container("app").config.env
    assert "GUNICORN_CMD_ARGS=--reload" in env
    assert config["worker_class"] == "sync"
    bindings = [b for bs in stack.container("nginx").network_settings.ports.values() if bs for b in bs]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
    assert stack.container("app").network_settings.ports in (None, {}) or not any(
        stack.container("app").network_settings.ports.values()
    )
